"""Views of the tasks app, one module per area (workflows and templates, tasks, gallery)."""
