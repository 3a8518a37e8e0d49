"""The usage page's and the API's query: which team(s), which UTC days, grouped how."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django import forms

from accounting import reports


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @classmethod
    def this_month(cls) -> Period:
        return cls(*reports.month_of(reports.today_utc()))


class PeriodForm(forms.Form):
    """`from`/`to` (UTC days, both included; this month by default), and `group_by`."""

    team = forms.IntegerField(required=False, min_value=1)
    group_by = forms.ChoiceField(choices=[(g, g) for g in reports.GROUPS], required=False)

    def __init__(self, data, *args, **kwargs) -> None:
        super().__init__(data, *args, **kwargs)
        # "from" is a Python keyword: the fields are added under their query names.
        self.fields["from"] = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
        self.fields["to"] = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def clean(self) -> dict:
        cleaned = super().clean()
        default = Period.this_month()
        start = cleaned.get("from") or default.start
        end = cleaned.get("to") or default.end
        if not self.errors and start > end:
            self.add_error("to", "Must not be before `from`.")
        cleaned["period"] = Period(start, end)
        cleaned["group_by"] = cleaned.get("group_by") or "day"
        return cleaned
