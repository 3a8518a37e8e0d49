from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    # View names (prefixes) that belong to this section, for highlighting.
    sections: tuple[str, ...] = ()
    staff_only: bool = False

    def is_current(self, view_name: str) -> bool:
        return view_name == self.url_name or view_name.startswith(self.sections or (self.url_name,))


# Sections appear in the navigation as soon as their app provides the URL, so
# the bar never links to a page that does not exist yet.
NAVIGATION = (
    NavItem("Dashboard", "dashboard"),
    # Generate: the one way in to making pictures; its page leads to templates and workflows.
    NavItem("Generate", "workflows:generate", ("workflows:", "tasks:workflow", "tasks:template")),
    NavItem("Tasks", "tasks:tasks", ("tasks:task", "tasks:batch")),
    NavItem("Gallery", "tasks:gallery", ("tasks:gallery", "tasks:output_detail")),
    NavItem("Servers", "servers:list", ("servers:",)),
    NavItem("Models", "library:downloads", ("library:",)),
    NavItem("Limits", "fairness:limits", ("fairness:",)),
    NavItem("Webhooks", "webhooks:list", ("webhooks:",)),
    NavItem("Usage", "accounting:usage", ("accounting:",)),
    NavItem("Admin", "admin:index", ("admin:",), staff_only=True),
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
        items.append({"label": item.label, "url": url, "active": item.is_current(current)})
    return {"navigation": items}
