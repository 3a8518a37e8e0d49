from __future__ import annotations

import pytest

from teams.models import Role, Team
from tests.factories import make_team, make_user

pytestmark = pytest.mark.django_db


def test_members_see_only_their_own_teams():
    ours, theirs = make_team("Ours"), make_team("Theirs")
    user = make_user(team=ours)
    assert list(Team.objects.for_user(user)) == [ours]
    assert not theirs.can_view(user)


def test_staff_see_every_team_and_manage_it():
    make_team("A"), make_team("B")
    staff = make_user(staff=True)
    assert Team.objects.for_user(staff).count() == 2
    assert Team.objects.get(name="A").can_manage(staff)


@pytest.mark.parametrize(
    ("role", "submit", "manage"),
    [(Role.VIEWER, False, False), (Role.MEMBER, True, False), (Role.ADMIN, True, True)],
)
def test_roles_grant_increasing_rights(role, submit, manage):
    team = make_team()
    user = make_user(team=team, role=role)
    assert team.can_view(user)
    assert team.can_submit(user) is submit
    assert team.can_manage(user) is manage


def test_inactive_users_lose_access():
    team = make_team()
    user = make_user(team=team, role=Role.ADMIN, active=False)
    assert Team.objects.for_user(user).count() == 0
    assert team.role_of(user) is None


def test_slug_is_derived_from_the_name():
    assert make_team("Render Farm West").slug == "render-farm-west"


def test_account_page_lists_teams_and_roles(client):
    team = make_team("Studio")
    client.force_login(make_user(team=team, role=Role.VIEWER))
    html = client.get("/account/").content.decode()
    assert "Studio" in html
    assert "Viewer" in html


def test_admin_lists_teams_with_member_counts_and_edits_roles_on_the_user_page(client):
    team = make_team("Lighting")
    member = make_user("grace", team=team, role=Role.VIEWER)
    client.force_login(make_user(superuser=True))

    changelist = client.get("/admin/teams/team/").content.decode()
    assert "Lighting" in changelist
    assert '<td class="field-member_count">1</td>' in changelist

    user_page = client.get(f"/admin/auth/user/{member.pk}/change/").content.decode()
    assert "team membership" in user_page.lower()
    assert 'value="viewer" selected' in user_page
