"""Forms of the staff report screens. They only parse input; the services decide."""

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.reports.services import MAX_TEXT_LENGTH
from apps.reports.signing import TEXT_FIELDS

LABELS = {
    "exam_description": _("Examination"),
    "technique": _("Technique"),
    "findings": _("Findings"),
    "impression": _("Impression"),
    "recommendation": _("Recommendation"),
}
# Every field a version diff may name (the text, then the doctors), as the report screens label them.
CONTENT_LABELS = {**LABELS, "reporting_doctor": _("Reporting doctor"), "reviewing_doctor": _("Reviewing doctor")}


class _TextFields(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in TEXT_FIELDS:
            self.fields[name] = forms.CharField(
                label=LABELS[name],
                required=False,
                strip=False,
                max_length=MAX_TEXT_LENGTH,
                widget=forms.Textarea(attrs={"rows": 6 if name == "findings" else 3}),
            )
        # The text first, then what a subclass declares (the reason, the preliminary box).
        self.order_fields(["version", *TEXT_FIELDS])

    def text(self) -> dict[str, str]:
        return {name: self.cleaned_data[name] for name in TEXT_FIELDS}


class DraftForm(_TextFields):
    preliminary = forms.BooleanField(label=_("Mark as preliminary"), required=False)


class AmendForm(_TextFields):
    reason = forms.CharField(
        label=_("Reason for the amendment"), max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class SignForm(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)


class EnterInErrorForm(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    reason = forms.CharField(label=_("Why was this report entered in error?"), max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2}))  # fmt: skip


class DiffForm(forms.Form):
    a = forms.IntegerField(label=_("From version"), min_value=1)
    b = forms.IntegerField(label=_("To version"), min_value=1)
