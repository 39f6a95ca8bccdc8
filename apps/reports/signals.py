"""Signals of publication, sent after the transaction that caused them commits.

The patient portal listens to send the patient a message; receivers must not fail the sender.
"""

from django.dispatch import Signal

# kwargs: study, publication
study_published = Signal()
# kwargs: study, version (the new amended ReportVersion of a study already published)
published_report_amended = Signal()
# kwargs: study, publication
study_withdrawn = Signal()
