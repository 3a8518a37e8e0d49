"""The task list, as the tasks page and `GET /api/v1/tasks` show it: whose tasks,
newest first, a page at a time, loading only what a row shows.

With 100,000 tasks a deep page took a second (#15): it sorted every visible
task with all its columns, graph included, joined to five tables. Now a
page is a count and two small queries, each served by an index (migration 0010):
- the page's ids alone, read in order from task_newest (or task_team_newest for
  one team) with the team and status filters applied inside the index, so even
  the last page walks an index, never the table, and sorts nothing;
- those tasks' rows, with only the names of the team, template, workflow and
  server they refer to, and of the graph only what the row shows
  (`tasks.graph_facts`).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from tasks.graph_facts import with_graph_facts
from tasks.models import Task
from teams.models import Team

NEWEST_FIRST = ("-created_at", "-pk")

# Everything a row of the page or of the API reads (`task_json`, the progress
# view, the waiting reason), and of the objects it names only their names.
ROW_FIELDS = (
    "team_id",
    "team__name",
    "submitter__username",
    "workflow_version__number",
    "workflow_version__workflow__name",
    "template__name",
    "server__name",
    "params",
    "workflow_key",
    "priority",
    "status",
    "batch_id",
    "prompt_id",
    "attempts",
    "max_attempts",
    "not_before",
    "cancel_requested",
    "progress_node",
    "progress_node_type",
    "progress_value",
    "progress_max",
    "progress_nodes_done",
    "error_type",
    "error_message",
    "error_node",
    "error_class",
    "created_at",
    "dispatched_at",
    "started_at",
    "finished_at",
)


def visible_tasks(user, teams: Iterable[Team] | None = None) -> QuerySet[Task]:
    """The tasks `user` may see; `teams`: `Team.objects.for_user(user)`, if the
    caller has them already.

    Filtered by the teams' ids rather than `TeamScopedQuerySet.for_user`'s
    subquery: PostgreSQL then knows how many tasks each team has and picks the
    right index (the subquery made it expect 2,353 rows of 59,624), and staff,
    who see every team, get no filter at all."""
    if user.is_authenticated and user.is_active and user.is_staff:
        return Task.objects.all()
    if teams is None:
        teams = Team.objects.for_user(user).only("pk")
    return Task.objects.filter(team_id__in=[team.pk for team in teams])


def rows(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """`tasks` loading what a list row shows and no more."""
    related = ("team", "submitter", "workflow_version__workflow", "template", "server")
    return with_graph_facts(tasks.select_related(*related).only(*ROW_FIELDS))


class TaskPaginator(Paginator):
    """Pages of `tasks` newest first: a page's ids first (ordered and offset in an
    index), then only those rows, loaded by `rows`."""

    def __init__(self, tasks: QuerySet[Task], per_page: int, rows_of=rows) -> None:
        self._rows_of = rows_of
        ids = tasks.order_by(*NEWEST_FIRST).values_list("pk", flat=True)
        super().__init__(ids, per_page)

    def _get_page(self, ids, number, paginator) -> Page:
        ids = list(ids)
        tasks = Task.objects.filter(pk__in=ids).order_by()  # in the order of `ids`, below
        loaded = {task.pk: task for task in self._rows_of(tasks)}
        # A task deleted between the two queries is left out, not an error.
        return Page([loaded[pk] for pk in ids if pk in loaded], number, paginator)
