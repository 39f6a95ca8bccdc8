"""factory-boy factories shared by the suite. Every tenant-owned row is created inside its
hospital's context, as the application would."""

import factory
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import Membership, PlatformRoleGrant, User
from apps.tenants.models import Hospital

DEFAULT_PASSWORD = "Correct-Horse-42"


class HospitalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Hospital

    code = factory.Sequence(lambda n: f"hosp-{n}")
    name_zh = factory.Sequence(lambda n: f"第{n}人民医院")
    name_en = factory.Sequence(lambda n: f"People's Hospital No. {n}")
    institution_name = factory.Sequence(lambda n: f"PEOPLES HOSPITAL {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    display_name = factory.Sequence(lambda n: f"医生{n}")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def saved(self, create, extracted, **kwargs):
        if create:
            self.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    hospital = factory.SubFactory(HospitalFactory)
    user = factory.SubFactory(UserFactory)


class PlatformRoleGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PlatformRoleGrant

    user = factory.SubFactory(UserFactory)


def confirmed_totp_device(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="default", confirmed=True)
