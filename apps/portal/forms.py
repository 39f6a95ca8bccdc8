from django import forms
from django.utils.translation import gettext_lazy as _

SHARE_CHOICES = [
    (2, _("2 hours")),
    (24, _("1 day")),
    (72, _("3 days")),
    (168, _("7 days")),
    (720, _("30 days")),
]


class HospitalForm(forms.Form):
    hospital = forms.CharField(label=_("Hospital code"), max_length=31)


class LoginForm(forms.Form):
    phone = forms.CharField(
        label=_("Mobile phone number"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}),
    )
    identity = forms.CharField(label="", max_length=20, widget=forms.TextInput(attrs={"autocomplete": "off"}))


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Verification code"),
        max_length=6,
        min_length=6,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9]*"}),
    )


class ShareForm(forms.Form):
    hours = forms.TypedChoiceField(label=_("Valid for"), choices=SHARE_CHOICES, coerce=int, initial=72)


class AccessCodeForm(forms.Form):
    access_code = forms.CharField(
        label=_("Access code"),
        max_length=6,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
