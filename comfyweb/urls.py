from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from comfyweb import views

admin.site.site_header = "ComfyWeb administration"
admin.site.site_title = "ComfyWeb admin"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path(
        "account/password/",
        auth_views.PasswordChangeView.as_view(success_url="/account/"),
        name="password_change",
    ),
    path("", include("api.urls")),
    path("servers/", include("servers.urls")),
    path("library/", include("library.urls")),
    path("", include("workflows.urls")),
    path("", include("tasks.urls")),
    path("onboarding/", include("onboarding.urls")),
    path("limits/", include("fairness.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("usage/", include("accounting.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages (the admin's) that name no icon.
    path(
        "favicon.ico",
        login_not_required(RedirectView.as_view(url=static("img/favicon.svg"), permanent=True)),
        name="favicon",
    ),
]

# A form too large to read is a 413, not Django's generic 400 page.
handler400 = "comfyweb.guard.bad_request"
