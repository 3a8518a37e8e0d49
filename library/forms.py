"""The Downloads page's form: what staff type to fetch a model into the library.

The fields are checked by `library.requests.request_download` (the API asks the
same function): its errors come back on the fields they name. Headers are typed
as "Name: value" lines and are write-only: the textarea is never filled in again,
not even when the form comes back with an error (they are usually a token).
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from library.models import DEFAULT_CONNECTIONS, FOLDER_CHOICES, MAX_CONNECTIONS, Download
from library.requests import request_download

# request_download's field names -> the form's.
FIELD_NAMES = {"expected_sha256": "sha256", "state": None, "__all__": None}


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never shows what was typed into it (as PasswordInput)."""

    def format_value(self, value) -> None:
        return None


def parse_header_lines(text: str) -> dict[str, str]:
    """'Name: value' lines (blank lines skipped) as a mapping. Messages name the line
    and the header, never a value."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise ValidationError(f'Line {number} is not "Name: value".', code="line")
        if name.lower() in (known.lower() for known in headers):
            raise ValidationError(f"{name} is given twice.", code="duplicate")
        headers[name] = value.strip()
    return headers


class DownloadForm(forms.Form):
    url = forms.CharField(label="URL", max_length=2048, widget=forms.URLInput)
    folder = forms.ChoiceField(choices=FOLDER_CHOICES, initial="checkpoints")
    filename = forms.CharField(
        required=False, max_length=255, help_text="Empty: the last part of the URL's path."
    )
    sha256 = forms.CharField(
        label="SHA-256",
        required=False,
        max_length=64,
        help_text="Optional: the download fails if the file hashes to anything else.",
    )
    headers = forms.CharField(
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off"}),
        help_text='One "Name: value" per line, e.g. "Authorization: Bearer …". Sent only to '
        "the URL's own host, never shown again (retype them if the form comes back).",
    )
    connections = forms.IntegerField(
        min_value=1, max_value=MAX_CONNECTIONS, initial=DEFAULT_CONNECTIONS
    )

    def clean_headers(self) -> dict[str, str]:
        return parse_header_lines(self.cleaned_data.get("headers") or "")

    def submit(self) -> Download | None:
        """Ask for the download; None (and the errors on their fields) if refused."""
        data = self.cleaned_data
        try:
            return request_download(
                data["url"],
                data["folder"],
                filename=data["filename"] or None,
                sha256=data["sha256"] or None,
                headers=data["headers"],
                connections=data["connections"],
            )
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                field = FIELD_NAMES.get(name, name)
                self.add_error(field if field in self.fields else None, messages)
            return None
