"""The JSON API v1 (A1): django-ninja on the same models and services as the pages."""
