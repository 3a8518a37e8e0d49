from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    staff_only: bool = False


# Sections appear in the navigation as soon as their app provides the URL, so
# the bar never links to a page that does not exist yet.
NAVIGATION = (
    NavItem("Dashboard", "dashboard"),
    NavItem("Workflows", "tasks:workflows"),
    NavItem("Tasks", "tasks:tasks"),
    NavItem("Gallery", "tasks:gallery"),
    NavItem("Servers", "servers:list"),
    NavItem("Admin", "admin:index", staff_only=True),
)


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": []}
    current = request.resolver_match.view_name if request.resolver_match else ""
    items = []
    for item in NAVIGATION:
        if item.staff_only and not user.is_staff:
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        section = item.url_name.split(":")[0]
        active = current == item.url_name or (":" in item.url_name and current.startswith(section))
        items.append({"label": item.label, "url": url, "active": active})
    return {"navigation": items}
