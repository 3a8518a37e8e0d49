from __future__ import annotations

import io
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tasks.models import Batch, Output, Priority, Task
from teams.models import Role
from tests.factories import (
    add_version,
    empty_save_template,
    make_team,
    make_template,
    make_user,
    make_workflow,
    shared_workflow,
)
from tests.workflows.test_templates import TXT2IMG
from workflows.models import ParameterType, Template

pytestmark = pytest.mark.django_db


def _management(prefix: str, total: int, initial: int = 0) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": total,
        f"{prefix}-INITIAL_FORMS": initial,
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }


def _param(index: int, **fields) -> dict:
    return {f"parameters-{index}-{name}": value for name, value in fields.items()}


def _submit(client, template, **fields):
    """POST the empty_save template's submit form: defaults, then `fields`."""
    data = {
        "p_width": "64",
        "p_color": "0",
        "p_prefix": "x",
        "priority": 1,
        "mode": "count",
        "count": 1,
        "action": "submit",
    }
    return client.post(f"/templates/{template.pk}/", data | fields)


def test_new_template_page_offers_suggested_parameters(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    html = client.get(f"/workflows/{workflow.pk}/templates/new/").content.decode()
    assert 'value="seed"' in html
    assert 'value="steps"' in html
    assert 'value="nonce"' in html


def test_parameters_keep_the_order_they_were_given_in_on_the_submit_form(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    data = {"name": "Ordered", "description": "", **_management("parameters", 2)}
    data |= _param(0, name="steps", label="Steps", type="int", node_id="2", input_name="steps")
    data |= _param(1, name="seed", label="Seed", type="seed", node_id="2", input_name="nonce")
    data["parameters-0-default_text"] = "3"
    data["parameters-1-default_text"] = "7"
    assert client.post(f"/workflows/{workflow.pk}/templates/new/", data).status_code == 302
    template = Template.objects.get(name="Ordered")
    assert [p.name for p in template.parameters.all()] == ["steps", "seed"]
    page = client.get(f"/templates/{template.pk}/").content.decode()
    assert page.index('name="p_steps"') < page.index('name="p_seed"')


def test_create_template_with_parameters_and_submit_it(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    data = {"name": "Slow", "description": "", **_management("parameters", 2)}
    data |= _param(
        0,
        name="seed",
        label="Seed",
        type="seed",
        node_id="2",
        input_name="nonce",
        default_text="7",
        minimum="0",
    )
    data |= _param(
        1,
        name="steps",
        label="Steps",
        type="int",
        node_id="2",
        input_name="steps",
        default_text="3",
        minimum="1",
        maximum="10",
    )
    response = client.post(f"/workflows/{workflow.pk}/templates/new/", data)
    template = Template.objects.get(name="Slow")
    assert response.status_code == 302
    assert [p.name for p in template.parameters.all()] == ["seed", "steps"]
    assert template.parameters.get(name="steps").default == 3

    page = client.get(f"/templates/{template.pk}/").content.decode()
    assert "Steps" in page
    assert "Seed sweep" in page
    response = _submit(
        client,
        template,
        p_seed="5",
        p_steps="4",
        priority=Priority.HIGH,
        mode="sweep",
        count=3,
        sweep_parameter="seed",
        sweep_start="10",
    )
    assert response.status_code == 302
    tasks = list(Task.objects.order_by("id"))
    assert [t.graph["2"]["inputs"]["nonce"] for t in tasks] == [10, 11, 12]
    assert {t.graph["2"]["inputs"]["steps"] for t in tasks} == {4}
    assert {t.priority for t in tasks} == {Priority.HIGH}
    assert {t.template_id for t in tasks} == {template.pk}
    assert {t.workflow_version_id for t in tasks} == {template.workflow_version_id}
    assert Batch.objects.count() == 1


def _rows(html: str) -> list[str]:
    """The editor's parameter rows (each <tr> of its table body)."""
    body = html.split('<table class="table params">', 1)[1].split("</tbody>", 1)[0]
    return body.split("<tbody>", 1)[1].split("</tr>")[:-1]


def _options(html: str, select_name: str) -> list[dict[str, str]]:
    """The options of one <select>: their value, label, data-node and selected flag."""
    select = html.split(f'name="{select_name}"', 1)[1].split("</select>", 1)[0]
    found = []
    for attrs, label in re.findall(r"<option([^>]*)>([^<]*)</option>", select):
        value = re.search(r'value="([^"]*)"', attrs)
        node = re.search(r'data-node="([^"]*)"', attrs)
        found.append(
            {
                "value": value.group(1) if value else "",
                "label": label,
                "node": node.group(1) if node else "",
                "selected": " selected" in attrs,
            }
        )
    return found


def test_new_template_page_keeps_an_empty_row_after_the_suggestions(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    html = client.get(f"/workflows/{workflow.pk}/templates/new/").content.decode()
    rows = _rows(html)
    last = len(rows) - 1
    assert last >= 2  # at least the seed (nonce) and the steps are suggested
    assert f'name="parameters-TOTAL_FORMS" value="{len(rows)}"' in html
    assert all('-name" value=' in row for row in rows[:last])
    assert f'name="parameters-{last}-name" value=' not in rows[last]  # empty, for one more
    data = {"name": "Slow", **_management("parameters", len(rows))}
    data |= _param(last, name="pace", type="float", node_id="2", input_name="seconds_per_step")
    assert client.post(f"/workflows/{workflow.pk}/templates/new/", data).status_code == 302
    [param] = Template.objects.get().parameters.all()
    assert (param.name, param.node_id, param.input_name) == ("pace", "2", "seconds_per_step")


def test_node_and_input_are_picked_from_the_graph(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    html = client.get(f"/workflows/{workflow.pk}/templates/new/").content.decode()
    nodes = _options(html, "parameters-2-node_id")
    assert [(o["value"], o["label"]) for o in nodes] == [
        ("", "— node —"),
        ("1", "1 · EmptyImage"),
        ("2", "2 · SlowProgress"),
        ("3", "3 · SaveImage"),
    ]
    inputs = _options(html, "parameters-2-input_name")
    assert inputs[0]["value"] == ""
    assert [(o["node"], o["value"]) for o in inputs[1:]] == [
        ("1", "batch_size"),
        ("1", "color"),
        ("1", "height"),
        ("1", "width"),
        ("2", "nonce"),
        ("2", "seconds_per_step"),
        ("2", "steps"),
        ("3", "filename_prefix"),
    ]  # links (2's image, 3's images) are no parameters
    assert '<optgroup label="2 · SlowProgress">' in html


def test_a_rows_input_picker_selects_the_input_of_its_own_node(client, team, member):
    """Two nodes with a `text` input: the row of node 7 selects node 7's."""
    workflow = make_workflow(team, graph=TXT2IMG)
    client.force_login(member)
    html = client.get(f"/workflows/{workflow.pk}/templates/new/").content.decode()
    index = next(i for i, row in enumerate(_rows(html)) if 'value="prompt_7"' in row)
    [selected] = [o for o in _options(html, f"parameters-{index}-input_name") if o["selected"]]
    assert (selected["node"], selected["value"]) == ("7", "text")
    [node] = [o for o in _options(html, f"parameters-{index}-node_id") if o["selected"]]
    assert node["value"] == "7"


def test_the_editor_offers_a_row_to_copy_for_another_parameter(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    html = client.get(f"/templates/{template.pk}/edit/").content.decode()
    assert len(_rows(html)) == 4  # three parameters and an empty row
    row = html.split('<template id="parameter-row">', 1)[1].split("</template>", 1)[0]
    assert 'name="parameters-__prefix__-node_id"' in row
    assert 'id="add-parameter" hidden' in html  # shown by the script
    assert "js/template_editor.js" in html


def test_parameter_must_name_an_existing_node_and_input(client, team, member):
    workflow = make_workflow(team)
    client.force_login(member)
    data = {"name": "Bad", **_management("parameters", 2)}
    data |= _param(0, name="a", type="int", node_id="99", input_name="width")
    data |= _param(1, name="b", type="int", node_id="1", input_name="depth")
    html = client.post(f"/workflows/{workflow.pk}/templates/new/", data).content.decode()
    assert "There is no node 99" in html
    assert "has no input depth" in html
    assert not Template.objects.exists()


def test_parameter_on_a_link_or_with_a_bad_default_is_refused(client, team, member):
    workflow = make_workflow(team)
    client.force_login(member)
    data = {"name": "Bad", **_management("parameters", 2)}
    data |= _param(0, name="a", type="text", node_id="2", input_name="images")
    data |= _param(
        1, name="b", type="int", node_id="1", input_name="width", default_text="9", maximum="5"
    )
    html = client.post(f"/workflows/{workflow.pk}/templates/new/", data).content.decode()
    assert "is a link to another node" in html
    assert "At most 5." in html


def test_submit_form_shows_per_field_errors_and_queues_nothing(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    html = _submit(client, template, p_width="99999", p_color="12").content.decode()
    assert "Ensure this value is less than or equal to 2048" in html
    assert "Select a valid choice" in html
    assert not Task.objects.exists()


def test_value_list_with_a_bad_line_names_the_line(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    html = _submit(
        client, template, mode="list", list_parameter="width", list_values="64\n5000\n128"
    ).content.decode()
    assert "Line 2 (5000): At most 2048." in html
    assert not Task.objects.exists()


def test_value_list_queues_one_task_per_value(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    _submit(
        client, template, priority=0, mode="list", list_parameter="width", list_values="64\n128"
    )
    assert sorted(t.graph["1"]["inputs"]["width"] for t in Task.objects.all()) == [64, 128]


def test_preview_shows_what_changes_and_queues_nothing(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    html = _submit(
        client, template, p_width="300", p_color="255", p_prefix="comfyweb_empty", action="preview"
    ).content.decode()
    assert "Preview: what changes" in html
    assert '<td class="after">300</td>' in html
    assert '<td class="after">255</td>' in html
    assert "filename_prefix</td>" not in html
    assert not Task.objects.exists()


def _slow_template(team, *parameters):
    """slow_progress (a `nonce` seed input on node 2) with the given parameters."""
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    return make_template(workflow.current_version, parameters=list(parameters))


SEED_PARAM = {"name": "seed", "node_id": "2", "input_name": "nonce", "type": ParameterType.SEED}
STEPS_PARAM = {"name": "steps", "node_id": "2", "input_name": "steps", "type": "int"}


def _preview_rows(html: str) -> list[list[str]]:
    """The cells of the preview's per-run table, one list per run."""
    table = html.split('<table class="table small runs">', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row) for row in body.split("</tr>")[:-1]]


def test_preview_of_a_seed_sweep_shows_each_runs_seed(client, team, member):
    template = _slow_template(team, SEED_PARAM | {"default": 1})
    client.force_login(member)
    html = client.post(
        f"/templates/{template.pk}/",
        {
            "p_seed": "1",
            "priority": 1,
            "mode": "sweep",
            "count": 3,
            "sweep_parameter": "seed",
            "sweep_start": "42",
            "action": "preview",
        },
    ).content.decode()
    assert "Nothing changes" not in html
    assert [row[1:] for row in _preview_rows(html)] == [["42"], ["43"], ["44"]]
    assert "random" not in html.split('id="preview"', 1)[1]
    assert not Task.objects.exists()


def test_preview_of_a_value_list_shows_one_run_per_value(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    html = _submit(
        client,
        template,
        action="preview",
        mode="list",
        list_parameter="width",
        list_values="64\n128\n256",
    ).content.decode()
    assert [row[1:] for row in _preview_rows(html)] == [["64"], ["128"], ["256"]]
    assert '<td class="after">x</td>' in html  # the prefix: the same in every run


def test_preview_of_run_n_times_says_each_run_gets_a_random_seed(client, team, member):
    template = _slow_template(team, STEPS_PARAM | {"default": 2})
    client.force_login(member)
    html = client.post(
        f"/templates/{template.pk}/",
        {"p_steps": "2", "priority": 1, "mode": "count", "count": 2, "action": "preview"},
    ).content.decode()
    rows = _preview_rows(html)
    assert [row[0] for row in rows] == ["1", "2"]
    assert all("random" in row[1] for row in rows)


def test_run_again_of_a_batch_task_reproduces_its_graph(client, team, member):
    """A task of "Run N times" got a fresh seed on an input no parameter sets; its
    run-again link (task page and gallery) prefills that seed, and submitting it
    as prefilled queues the very same graph."""
    template = _slow_template(team, STEPS_PARAM | {"default": 2})
    client.force_login(member)
    client.post(
        f"/templates/{template.pk}/",
        {"p_steps": "3", "priority": 1, "mode": "count", "count": 2, "action": "submit"},
    )
    first = Task.objects.order_by("pk").first()
    assert first.params == {"steps": 3, "2.nonce": first.graph["2"]["inputs"]["nonce"]}
    url = client.get(f"/tasks/{first.pk}/").context["run_again_url"]
    output = Output(task=first, team=team, content_type="image/png", size=1)
    output.file.save("ignored.png", ContentFile(b"x"), save=False)
    output.save()
    assert client.get(f"/gallery/{output.pk}/").context["run_again_url"] == url
    form = client.get(url).context["form"]
    data = {bf.html_name: bf.value() for bf in form if bf.value() is not None}
    response = client.post(url, data | {"action": "submit"})
    assert response.status_code == 302
    again = Task.objects.order_by("pk").last()
    assert again.graph == first.graph
    assert again.params == first.params
    output.file.delete(save=False)


def test_a_pinned_seed_out_of_range_is_a_form_error(client, team, member):
    template = _slow_template(team)
    client.force_login(member)
    response = client.post(
        f"/templates/{template.pk}/",
        {"s_2.nonce": str(2**64), "priority": 1, "mode": "count", "count": 1, "action": "submit"},
    )
    assert response.status_code == 200
    assert str(2**64 - 1) in response.content.decode()
    assert not Task.objects.exists()


SEED_MAX = 2**64 - 1


@pytest.mark.parametrize("action", ["preview", "submit"])
def test_a_seed_beyond_2_64_minus_1_is_a_form_error_naming_the_bound(client, team, member, action):
    template = _slow_template(team, SEED_PARAM | {"default": 1})
    client.force_login(member)
    data = {"priority": 1, "mode": "count", "count": 1, "action": action}
    response = client.post(
        f"/templates/{template.pk}/", data | {"p_seed": "99999999999999999999999999999"}
    )
    assert response.status_code == 200
    assert f"less than or equal to {SEED_MAX}" in response.content.decode()
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("param", "start", "message"),
    [
        (SEED_PARAM, SEED_MAX - 1, f"{SEED_MAX - 1} … {SEED_MAX + 1}: A seed is at most 2**64 - 1"),
        (SEED_PARAM | {"maximum": 1000}, 999, "999 … 1001: At most 1000."),
    ],
    ids=["past-2**64-1", "past-the-parameters-maximum"],
)
def test_a_sweep_running_past_its_last_seed_is_a_form_error(
    client, team, member, param, start, message
):
    template = _slow_template(team, param | {"default": 1})
    client.force_login(member)
    for action in ("preview", "submit"):
        response = client.post(
            f"/templates/{template.pk}/",
            {
                "p_seed": "1",
                "priority": 1,
                "mode": "sweep",
                "count": 3,
                "sweep_parameter": "seed",
                "sweep_start": str(start),
                "action": action,
            },
        )
        assert response.status_code == 200
        assert message in response.content.decode()
    assert not Task.objects.exists()


def test_the_editor_refuses_a_seed_default_beyond_2_64_minus_1(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    data = {"name": "Big", **_management("parameters", 1)}
    data |= _param(0, name="seed", type="seed", node_id="2", input_name="nonce",
                   default_text=str(SEED_MAX + 1))  # fmt: skip
    response = client.post(f"/workflows/{workflow.pk}/templates/new/", data)
    assert response.status_code == 200
    assert f"A seed is at most 2**64 - 1 ({SEED_MAX})." in response.content.decode()
    assert not Template.objects.exists()


def test_a_choice_too_long_to_be_a_number_stays_text(client, team, member):
    workflow = make_workflow(team)
    client.force_login(member)
    data = {"name": "Long", **_management("parameters", 1)}
    data |= _param(0, name="c", type="choice", node_id="2", input_name="filename_prefix",
                   choices_text="9" * 5000)  # fmt: skip
    response = client.post(f"/workflows/{workflow.pk}/templates/new/", data)
    assert response.status_code == 302
    assert Template.objects.get().parameters.get().choices == ["9" * 5000]


def test_image_parameter_upload_is_stored_under_a_generated_name(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("load_invert_save"))
    template = make_template(
        workflow.current_version,
        parameters=[
            {"name": "image", "node_id": "1", "input_name": "image", "type": ParameterType.IMAGE},
        ],
    )
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    upload = SimpleUploadedFile("../../evil name.png", buffer.getvalue(), "image/png")
    client.force_login(member)
    response = client.post(
        f"/templates/{template.pk}/",
        {"p_image": upload, "priority": 1, "mode": "count", "count": 1, "action": "submit"},
    )
    assert response.status_code == 302
    task = Task.objects.get()
    stored = task.params["image"]
    assert stored["upload"].startswith(f"uploads/team-{team.pk}/")
    assert "evil" not in stored["upload"]
    assert default_storage.exists(stored["upload"])
    assert stored["upload"].endswith(stored["name"])
    # The marker dispatch replaces with the server's name after POST /upload/image.
    assert task.graph["1"]["inputs"]["image"] == {"upload": stored["upload"]}
    default_storage.delete(stored["upload"])


def test_viewer_sees_the_form_but_cannot_submit_edit_or_delete(client, team):
    template = empty_save_template(team)
    client.force_login(make_user(team=team, role=Role.VIEWER))
    assert client.get(f"/templates/{template.pk}/").status_code == 200
    response = _submit(client, template)
    assert response.status_code == 403
    assert client.get(f"/templates/{template.pk}/edit/").status_code == 403
    assert client.post(f"/templates/{template.pk}/delete/").status_code == 403
    assert not Task.objects.exists()


def test_edit_template_changes_parameters_and_admin_deletes_it(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    params = list(template.parameters.all())
    data = {"name": "Renamed", **_management("parameters", 3, initial=3)}
    for index, param in enumerate(params):
        data |= _param(
            index,
            id=param.pk,
            name=param.name,
            type=param.type,
            node_id=param.node_id,
            input_name=param.input_name,
            default_text="",
            choices_text="0\n255",
            label=param.label,
        )
    data["parameters-2-DELETE"] = "on"
    data["parameters-0-default_text"] = "100"
    response = client.post(f"/templates/{template.pk}/edit/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    template.refresh_from_db()
    assert template.name == "Renamed"
    assert template.parameters.count() == 2
    assert template.parameters.get(name="width").default == 100
    client.force_login(make_user(team=team, role=Role.ADMIN))
    assert client.post(f"/templates/{template.pk}/delete/").status_code == 302
    assert not Template.objects.exists()


def test_run_from_the_workflow_page_queues_count_tasks_with_fresh_seeds(client, team, member):
    workflow = make_workflow(team, graph=shared_workflow("slow_progress"))
    client.force_login(member)
    response = client.post(f"/workflows/{workflow.pk}/run/", {"priority": 3, "count": 3})
    assert response["Location"] == "/tasks/"
    tasks = list(Task.objects.all())
    assert len(tasks) == 3
    assert {t.priority for t in tasks} == {Priority.URGENT}
    assert len({t.graph["2"]["inputs"]["nonce"] for t in tasks}) == 3


def test_run_again_prefills_the_form_with_a_tasks_values(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    _submit(client, template, p_width="321", p_color="255", p_prefix="again")
    task = Task.objects.get()
    html = client.get(f"/templates/{template.pk}/", {"task": task.pk}).content.decode()
    assert 'value="321"' in html
    assert 'value="again"' in html
    foreign = Task.objects.create(
        team=make_team(), graph={}, params={"width": 999}, template=template
    )
    html = client.get(f"/templates/{template.pk}/", {"task": foreign.pk}).content.decode()
    assert 'value="999"' not in html


def test_run_again_links_prefill_the_form_from_the_query(client, team, member):
    template = empty_save_template(team)
    client.force_login(member)
    html = client.get(
        f"/templates/{template.pk}/submit/", {"width": "222", "prefix": "from-link"}
    ).content.decode()
    assert 'value="222"' in html
    assert 'value="from-link"' in html


def test_moving_a_template_to_a_new_version_rechecks_its_parameters(client, team, member):
    template = empty_save_template(team)
    workflow = template.workflow_version.workflow
    graph = shared_workflow("empty_save")
    graph["1"] = {"class_type": "EmptyImage", "inputs": {"height": 64, "batch_size": 1}}
    graph["1"]["inputs"] |= {"color": 0}
    v2 = add_version(workflow, graph)
    client.force_login(member)
    params = list(template.parameters.all())
    data = {"name": template.name, "version": v2.number, **_management("parameters", 3, 3)}
    for index, param in enumerate(params):
        data |= _param(
            index,
            id=param.pk,
            name=param.name,
            type=param.type,
            node_id=param.node_id,
            input_name=param.input_name,
            choices_text="0\n255",
            label="",
        )
    html = client.post(f"/templates/{template.pk}/edit/", data).content.decode()
    assert "has no input width" in html
    template.refresh_from_db()
    assert template.workflow_version.number == 1
    data["parameters-0-DELETE"] = "on"
    assert client.post(f"/templates/{template.pk}/edit/", data).status_code == 302
    template.refresh_from_db()
    assert template.workflow_version == v2
