"""Webhook bodies as the providers document them (field names, nesting and value shapes from
each provider's own examples), with the recipient and Message-ID filled in."""

from __future__ import annotations

import json
from typing import Any


def ses_bounce(
    recipient: str,
    message_id: str,
    *,
    bounce_type: str = "Permanent",
    subtype: str = "General",
    status: str | None = "5.1.1",
    diagnostic: str | None = "smtp; 550 5.1.1 user unknown",
) -> dict[str, Any]:
    recipient_entry: dict[str, Any] = {"emailAddress": recipient, "action": "failed"}
    if status is not None:
        recipient_entry["status"] = status
    if diagnostic is not None:
        recipient_entry["diagnosticCode"] = diagnostic
    return {
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": "0100017c5d8ac4f2-bbcbe4f6-5f5b-4b8a-9d7c-2f0a1b2c3d4e-000000",
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [recipient_entry],
            "timestamp": "2026-11-26T10:12:01.000Z",
            "remoteMtaIp": "203.0.113.5",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-26T10:11:58.000Z",
            "source": "beta@example.com",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com",
            "sendingAccountId": "123456789012",
            "messageId": "0100017c5d8ac0d7-4ac5b2b2-ses-own-id-000000",
            "destination": [recipient],
            "headersTruncated": False,
            "headers": [
                {"name": "From", "value": "Beta Team <beta@example.com>"},
                {"name": "To", "value": recipient},
                {"name": "Message-ID", "value": f"<{message_id}>"},
            ],
            "commonHeaders": {
                "from": ["Beta Team <beta@example.com>"],
                "to": [recipient],
                "messageId": f"<{message_id}>",
                "subject": "Your invitation",
            },
        },
    }


def ses_complaint(recipient: str, message_id: str) -> dict[str, Any]:
    base = ses_bounce(recipient, message_id)
    del base["bounce"]
    base["notificationType"] = "Complaint"
    base["complaint"] = {
        "userAgent": "ExampleCorp Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": recipient}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2026-11-26T10:20:00.000Z",
        "timestamp": "2026-11-26T10:20:01.000Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
    }
    return base


def sns(notification: dict[str, Any]) -> dict[str, Any]:
    """An SES notification as SNS delivers it over HTTP: the notification is a JSON string."""
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-bounces",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(notification),
        "Timestamp": "2026-11-26T10:12:02.123Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }


def sendgrid(recipient: str, message_id: str, event: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": recipient,
        "timestamp": 1764151921,
        "smtp-id": f"<{message_id}>",
        "event": event,
        "category": ["beta"],
        "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


def postmark_bounce(
    recipient: str, message_id: str, kind: str = "HardBounce", details: str = ""
) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": {
            "HardBounce": 1,
            "SoftBounce": 4096,
            "Transient": 2,
            "DMARCPolicy": 100009,
        }.get(kind, 1),
        "Name": "Hard bounce",
        "Tag": "beta",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": details,
        "Email": recipient,
        "From": "beta@example.com",
        "BouncedAt": "2026-11-26T10:12:01Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your invitation",
        "Headers": [{"Name": "Message-ID", "Value": f"<{message_id}>"}],
    }


def postmark_complaint(recipient: str, message_id: str) -> dict[str, Any]:
    body = postmark_bounce(recipient, message_id, "SpamComplaint")
    body["RecordType"] = "SpamComplaint"
    body["TypeCode"] = 512
    return body


def mailgun(
    recipient: str,
    message_id: str,
    event: str = "failed",
    severity: str = "permanent",
    code: int = 550,
    message: str = "5.1.1 The email account that you tried to reach does not exist.",
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1764151921.275596,
        "log-level": "error",
        "event": event,
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2],
        "message": {
            "headers": {
                "to": recipient,
                "message-id": message_id,
                "from": "beta@example.com",
                "subject": "Your invitation",
            },
            "attachments": [],
            "size": 111,
        },
        "tags": ["beta"],
    }
    if event == "failed":
        data["severity"] = severity
        data["reason"] = "bounce" if severity == "permanent" else "generic"
        data["delivery-status"] = {
            "attempt-no": 1,
            "code": code,
            "message": message,
            "description": "",
            "mx-host": "mx.example.org",
        }
    return {
        "signature": {"timestamp": "1764151921", "token": "abc", "signature": "def"},
        "event-data": data,
    }


def resend(
    recipient: str, message_id: str, kind: str = "email.bounced", **bounce: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Beta Team <beta@example.com>",
        "to": [recipient],
        "subject": "Your invitation",
        "created_at": "2026-11-26T10:11:58.000Z",
        "headers": [{"name": "Message-ID", "value": f"<{message_id}>"}],
    }
    if kind == "email.bounced":
        data["bounce"] = {
            "message": "The recipient's email provider sent a hard bounce message.",
            "subType": "General",
            "type": "Permanent",
            **bounce,
        }
    return {"type": kind, "created_at": "2026-11-26T10:12:01.000Z", "data": data}
