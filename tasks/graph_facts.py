"""What a task list needs of each task's graph, computed by the database.

A row of the task list (page or API) shows the graph's size (the progress's
`nodes_total`) and the title and class of the node its progress stopped at, and
nothing else of the graph: yet the graph is the task's largest column (a few KB
to hundreds of KB of JSON). `with_graph_facts` asks the database for just those
two things (the node count, and the one node object the row names), and
`graph_of` hands `tasks.progress` a graph that answers the same for that node,
so the list never transfers or parses a graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import NotSupportedError, models
from django.db.models import F, Func

from tasks.progress import graph_size

NODE_COUNT = "graph_node_count"
PROGRESS_NODE = "graph_progress_node"


# The SQL below splices in compiled column expressions (with their own
# parameters, repeated where the expression is), never a value from a request.


class GraphNodeCount(Func):
    """Object-valued entries of a JSON object column (0 when it is not an object)."""

    output_field = models.IntegerField()
    postgresql = (
        "(SELECT count(*) FROM jsonb_each(CASE WHEN jsonb_typeof({graph}) = 'object' "
        "THEN {graph} ELSE '{{}}'::jsonb END) AS node WHERE jsonb_typeof(node.value) = 'object')"
    )
    sqlite = (
        "(SELECT count(*) FROM json_each(CASE WHEN json_type({graph}) = 'object' "
        "THEN {graph} ELSE '{{}}' END) WHERE type = 'object')"
    )

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"GraphNodeCount has no SQL for {connection.vendor}")

    def as_postgresql(self, compiler, connection, **extra_context):
        return self._as(self.postgresql, compiler)

    def as_sqlite(self, compiler, connection, **extra_context):
        return self._as(self.sqlite, compiler)

    def _as(self, template: str, compiler):
        graph, params = compiler.compile(self.get_source_expressions()[0])
        return template.format(graph=graph), (*params, *params)


class GraphNode(Func):
    """The object at key `node` (a text column) of a JSON object column, else NULL."""

    output_field = models.JSONField()
    postgresql = "(CASE WHEN jsonb_typeof({graph} -> {node}) = 'object' THEN {graph} -> {node} END)"
    sqlite = "(SELECT value FROM json_each({graph}) WHERE key = {node} AND type = 'object')"

    def __init__(self, graph, node, **extra):
        super().__init__(graph, node, **extra)

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"GraphNode has no SQL for {connection.vendor}")

    def as_postgresql(self, compiler, connection, **extra_context):
        (graph, graph_params), (node, node_params) = self._compiled(compiler)
        sql = self.postgresql.format(graph=graph, node=node)
        return sql, (*graph_params, *node_params, *graph_params, *node_params)

    def as_sqlite(self, compiler, connection, **extra_context):
        (graph, graph_params), (node, node_params) = self._compiled(compiler)
        return self.sqlite.format(graph=graph, node=node), (*graph_params, *node_params)

    def _compiled(self, compiler):
        return [compiler.compile(expression) for expression in self.get_source_expressions()]


def with_graph_facts(tasks: models.QuerySet) -> models.QuerySet:
    """`tasks` with what `graph_of` needs, for rows loaded without their graph."""
    return tasks.annotate(
        **{
            NODE_COUNT: GraphNodeCount(F("graph")),
            PROGRESS_NODE: GraphNode(F("graph"), F("progress_node")),
        }
    )


def graph_of(task) -> tuple[Mapping[str, Any], int]:
    """(a graph, its node count) for the task's progress: the whole graph when the
    row has it, else (a row from `with_graph_facts`) a graph of only the node its
    progress names, which `tasks.progress.node_title` and `node_class` read alike."""
    if hasattr(task, NODE_COUNT):
        node = getattr(task, PROGRESS_NODE)
        graph = {task.progress_node: node} if isinstance(node, Mapping) else {}
        return graph, max(1, getattr(task, NODE_COUNT))
    graph = task.graph or {}
    return graph, graph_size(graph)
