"""Audit event vocabulary, modelled on DICOM PS3.15 Annex A.5 audit messages.

Each action names its DICOM EventID and, where the standard has one, EventTypeCode, so an ATNA
(RFC 3881 / DICOM audit message) export can be produced from stored events.
"""

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class DicomEvent:
    event_id: str
    event_id_meaning: str
    event_type: str = ""
    event_type_meaning: str = ""
    action_code: str = "E"  # C create, R read, U update, D delete, E execute


class Action(models.TextChoices):
    LOGIN = "login", _("Login")
    LOGIN_FAILED = "login_failed", _("Login failed")
    SECOND_FACTOR_FAILED = "second_factor_failed", _("Second factor failed")
    SECOND_FACTOR_ENROLLED = "second_factor_enrolled", _("Second factor enrolled")
    ACCOUNT_LOCKED = "account_locked", _("Account locked")
    LOGOUT = "logout", _("Logout")
    API_AUTH_FAILED = "api_auth_failed", _("API authentication failed")
    API_TOKEN_ISSUED = "api_token_issued", _("API token issued")
    API_TOKEN_REVOKED = "api_token_revoked", _("API token revoked")
    ROLE_GRANTED = "role_granted", _("Role granted")
    ROLE_REVOKED = "role_revoked", _("Role revoked")
    USER_CHANGED = "user_changed", _("User security attributes changed")
    HOSPITAL_CHANGED = "hospital_changed", _("Hospital configuration changed")
    PATIENT_RECORD_VIEWED = "patient_record_viewed", _("Patient record viewed")
    PATIENT_RECORD_CHANGED = "patient_record_changed", _("Patient record changed")
    AUDIT_LOG_VIEWED = "audit_log_viewed", _("Audit log viewed")
    AUDIT_LOG_EXPORTED = "audit_log_exported", _("Audit log exported")
    STUDIES_QUERIED = "studies_queried", _("Studies queried")
    INSTANCES_ACCESSED = "instances_accessed", _("DICOM instances accessed")
    INSTANCES_IMPORTED = "instances_imported", _("DICOM instances imported")
    INSTANCES_RECEIVED = "instances_received", _("DICOM instances received")
    INSTANCE_REPLACED = "instance_replaced", _("DICOM instance replaced by a conflicting one")
    ARCHIVE_SWEPT = "archive_swept", _("Orphaned archive files removed")
    ARCHIVE_VERIFIED = "archive_verified", _("Stored objects verified (fixity check)")
    STORAGE_KEY_REWRAPPED = "storage_key_rewrapped", _("Hospital storage key wrapped under a new master key")
    DICOM_ASSOCIATION_REFUSED = "dicom_association_refused", _("DICOM association refused")
    DICOM_NODE_REGISTERED = "dicom_node_registered", _("DICOM node registered")
    DICOM_NODE_CHANGED = "dicom_node_changed", _("DICOM node changed")
    DICOM_NODE_REMOVED = "dicom_node_removed", _("DICOM node removed")
    REPORT_CREATED = "report_created", _("Report created")
    REPORT_DRAFT_SAVED = "report_draft_saved", _("Report draft saved")
    REPORT_SIGNED = "report_signed", _("Report signed")
    REPORT_AMENDED = "report_amended", _("Report amended")
    REPORT_VIEWED = "report_viewed", _("Report viewed")
    REPORT_ENTERED_IN_ERROR = "report_entered_in_error", _("Report marked entered in error")
    REPORT_EXPORTED = "report_exported", _("Report change log exported")
    REPORT_PRINTED = "report_printed", _("Report printed")
    REPORT_VERIFIED = "report_verified", _("Report signature checked")
    STUDY_IMAGES_COMPLETED = "study_images_completed", _("Study images marked complete")
    STUDY_MANIFEST_SET = "study_manifest_set", _("Study manifest recorded")
    STUDY_PUBLISHED = "study_published", _("Study published to patient")
    STUDY_UNPUBLISHED = "study_unpublished", _("Study withdrawn from patient")
    STUDY_OPENED = "study_opened", _("Study opened in viewer")
    STUDY_DOWNLOADED = "study_downloaded", _("Study downloaded")
    STUDY_ACCESS_EXPIRED = "study_access_expired", _("Access refused: service period ended")
    PATIENT_ENTRY_REFUSED = "patient_entry_refused", _("Patient entry refused")
    CODE_ISSUED = "code_issued", _("Verification code issued")
    CODE_ACCEPTED = "code_accepted", _("Verification code accepted")
    CODE_REJECTED = "code_rejected", _("Verification code rejected")
    PATIENT_LOCKED = "patient_locked", _("Patient entry locked")
    PATIENT_LOGIN = "patient_login", _("Patient signed in")
    PATIENT_LOGOUT = "patient_logout", _("Patient signed out")
    WECHAT_BOUND = "wechat_bound", _("WeChat account bound")
    SHARE_CREATED = "share_created", _("Share link created")
    SHARE_REVOKED = "share_revoked", _("Share link revoked")
    SHARE_OPENED = "share_opened", _("Share link opened")
    MESSAGE_SENT = "message_sent", _("Message sent to patient")
    MESSAGE_FAILED = "message_failed", _("Message to patient failed")


class Outcome(models.IntegerChoices):
    """DICOM EventOutcomeIndicator."""

    SUCCESS = 0, _("Success")
    MINOR_FAILURE = 4, _("Minor failure")
    SERIOUS_FAILURE = 8, _("Serious failure")
    MAJOR_FAILURE = 12, _("Major failure")


class EntryPoint(models.TextChoices):
    WEB = "web", _("Staff web")
    ADMIN = "admin", _("Back office")
    API = "api", _("API")
    DIMSE = "dimse", _("DICOM network")
    PORTAL = "portal", _("Patient portal")
    TASK = "task", _("Background task")
    COMMAND = "command", _("Command line")


_AUTH = ("110114", "User Authentication")
_SECURITY = ("110113", "Security Alert")

DICOM_EVENTS: dict[str, DicomEvent] = {
    Action.LOGIN: DicomEvent(*_AUTH, "110122", "Login"),
    Action.LOGIN_FAILED: DicomEvent(*_AUTH, "110122", "Login"),
    Action.SECOND_FACTOR_FAILED: DicomEvent(*_AUTH, "110122", "Login"),
    Action.LOGOUT: DicomEvent(*_AUTH, "110123", "Logout"),
    Action.API_AUTH_FAILED: DicomEvent(*_SECURITY, "110126", "Node Authentication"),
    Action.ACCOUNT_LOCKED: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "U"),
    Action.SECOND_FACTOR_ENROLLED: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "U"),
    Action.USER_CHANGED: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "U"),
    Action.API_TOKEN_ISSUED: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "C"),
    Action.API_TOKEN_REVOKED: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "D"),
    Action.ROLE_GRANTED: DicomEvent(*_SECURITY, "110136", "Security Roles Changed", "C"),
    Action.ROLE_REVOKED: DicomEvent(*_SECURITY, "110136", "Security Roles Changed", "D"),
    Action.HOSPITAL_CHANGED: DicomEvent(*_SECURITY, "110132", "Use of Restricted Function", "U"),
    Action.PATIENT_RECORD_VIEWED: DicomEvent("110110", "Patient Record", action_code="R"),
    Action.PATIENT_RECORD_CHANGED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.AUDIT_LOG_VIEWED: DicomEvent("110101", "Audit Log Used", action_code="R"),
    Action.AUDIT_LOG_EXPORTED: DicomEvent("110101", "Audit Log Used", action_code="R"),
    Action.STUDIES_QUERIED: DicomEvent("110112", "Query", action_code="E"),
    Action.INSTANCES_ACCESSED: DicomEvent("110103", "DICOM Instances Accessed", action_code="R"),
    Action.INSTANCES_IMPORTED: DicomEvent("110107", "Import", action_code="C"),
    # PS3.15 A.5.3.2: DICOM Instances Accessed with action U is a modification of stored instances.
    Action.INSTANCE_REPLACED: DicomEvent("110103", "DICOM Instances Accessed", action_code="U"),
    # A C-STORE association is a transfer between two AEs (PS3.15 A.5.3.4), not a media import.
    Action.INSTANCES_RECEIVED: DicomEvent("110104", "DICOM Instances Transferred", action_code="C"),
    # Maintenance of stored instances is DICOM Instances Accessed (PS3.15 A.5.3.2) like a replacement:
    # removing copies no instance row names (a crash's leftovers) is action D, reading every
    # stored object back to check it is action R; the outcome says whether any failed.
    Action.ARCHIVE_SWEPT: DicomEvent("110103", "DICOM Instances Accessed", action_code="D"),
    Action.ARCHIVE_VERIFIED: DicomEvent("110103", "DICOM Instances Accessed", action_code="R"),
    Action.STORAGE_KEY_REWRAPPED: DicomEvent(*_SECURITY, "110129", "Security Configuration", "U"),
    Action.DICOM_ASSOCIATION_REFUSED: DicomEvent(*_SECURITY, "110126", "Node Authentication"),
    Action.DICOM_NODE_REGISTERED: DicomEvent(*_SECURITY, "110129", "Security Configuration", "C"),
    Action.DICOM_NODE_CHANGED: DicomEvent(*_SECURITY, "110129", "Security Configuration", "U"),
    Action.DICOM_NODE_REMOVED: DicomEvent(*_SECURITY, "110129", "Security Configuration", "D"),
    # A diagnostic report is part of the patient record (PS3.15 A.5.3.9, 110110 Patient Record).
    Action.REPORT_CREATED: DicomEvent("110110", "Patient Record", action_code="C"),
    Action.REPORT_DRAFT_SAVED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.REPORT_SIGNED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.REPORT_AMENDED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.REPORT_VIEWED: DicomEvent("110110", "Patient Record", action_code="R"),
    Action.REPORT_ENTERED_IN_ERROR: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.REPORT_EXPORTED: DicomEvent("110106", "Export", action_code="R"),
    Action.REPORT_PRINTED: DicomEvent("110106", "Export", action_code="R"),
    Action.REPORT_VERIFIED: DicomEvent("110110", "Patient Record", action_code="R"),
    Action.STUDY_IMAGES_COMPLETED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.STUDY_MANIFEST_SET: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.STUDY_PUBLISHED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.STUDY_UNPUBLISHED: DicomEvent("110110", "Patient Record", action_code="U"),
    Action.STUDY_OPENED: DicomEvent("110103", "DICOM Instances Accessed", action_code="R"),
    Action.STUDY_DOWNLOADED: DicomEvent("110106", "Export", action_code="R"),
    Action.STUDY_ACCESS_EXPIRED: DicomEvent(*_SECURITY, "110132", "Use of Restricted Function"),
    # An entry token (QR code, SMS link) is the first step of a patient's sign-in, like a share
    # link (SHARE_OPENED): one that no longer works (study not published, link expired) is a
    # refused login attempt (User Authentication, outcome minor failure), not a security alert.
    Action.PATIENT_ENTRY_REFUSED: DicomEvent(*_AUTH, "110122", "Login"),
    Action.CODE_ISSUED: DicomEvent(*_AUTH, "110122", "Login", "C"),
    Action.CODE_ACCEPTED: DicomEvent(*_AUTH, "110122", "Login"),
    Action.CODE_REJECTED: DicomEvent(*_AUTH, "110122", "Login"),
    Action.PATIENT_LOCKED: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "U"),
    Action.PATIENT_LOGIN: DicomEvent(*_AUTH, "110122", "Login"),
    Action.PATIENT_LOGOUT: DicomEvent(*_AUTH, "110123", "Logout"),
    Action.WECHAT_BOUND: DicomEvent(*_SECURITY, "110137", "User Security Attributes Changed", "C"),
    Action.SHARE_CREATED: DicomEvent(*_SECURITY, "110132", "Use of Restricted Function", "C"),
    Action.SHARE_REVOKED: DicomEvent(*_SECURITY, "110132", "Use of Restricted Function", "D"),
    Action.SHARE_OPENED: DicomEvent(*_AUTH, "110122", "Login"),
    Action.MESSAGE_SENT: DicomEvent("110106", "Export", action_code="E"),
    Action.MESSAGE_FAILED: DicomEvent("110106", "Export", action_code="E"),
}
