"""Bounce reports as real mail servers write them (structure, field spelling and quirks taken
from the formats of Postfix, Exim, Gmail and Exchange; RFC 3464 and RFC 5965). Each function
returns the raw message for one recipient and the Message-ID of the message that bounced."""

from __future__ import annotations


def postfix(recipient: str, message_id: str, *, status: str = "5.1.1") -> bytes:
    return f"""Return-Path: <>
Received: by mx.example.net (Postfix) id 3F2A1C0A1B; Thu, 26 Nov 2026 10:12:01 +0000 (UTC)
Date: Thu, 26 Nov 2026 10:12:01 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: beta@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="3F2A1C0A1B.1764151921/mx.example.net"
Message-Id: <20261126101201.4C9D7C0A1C@mx.example.net>

This is a MIME-encapsulated message.

--3F2A1C0A1B.1764151921/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{recipient}>: host mail.example.org[203.0.113.5] said: 550 {status}
    <{recipient}>: Recipient address rejected: User unknown in virtual mailbox
    table (in reply to RCPT TO command)

--3F2A1C0A1B.1764151921/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 3F2A1C0A1B
X-Postfix-Sender: rfc822; beta@example.com
Arrival-Date: Thu, 26 Nov 2026 10:11:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected:
    User unknown in virtual mailbox table

--3F2A1C0A1B.1764151921/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <beta@example.com>
From: Beta <beta@example.com>
To: {recipient}
Subject: Your invitation to the beta
Message-ID: <{message_id}>
Date: Thu, 26 Nov 2026 10:11:57 +0000

--3F2A1C0A1B.1764151921/mx.example.net--
""".replace("\n", "\r\n").encode()


def exim(recipient: str, message_id: str) -> bytes:
    """Exim 4 with dsn_advertise: a multipart/report whose original is a full message/rfc822."""
    return f"""Return-path: <>
Received: from Debian-exim by smtp.example.net with local (Exim 4.96)
\tid 1tFm2x-0003Ab-2Q for beta@example.com; Thu, 26 Nov 2026 10:15:03 +0000
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@smtp.example.net>
To: beta@example.com
Content-Type: multipart/report; report-type=delivery-status; boundary=1764152103-eximdsn-1804289383
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1tFm2x-0003Ab-2Q@smtp.example.net>
Date: Thu, 26 Nov 2026 10:15:03 +0000

--1764152103-eximdsn-1804289383
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    host mx.example.org [198.51.100.7]
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    550 5.7.1 Mailbox unavailable

--1764152103-eximdsn-1804289383
Content-type: message/delivery-status

Reporting-MTA: dns; smtp.example.net

Action: failed
Final-Recipient: rfc822;{recipient}
Status: 5.0.0
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.7.1 Mailbox unavailable

--1764152103-eximdsn-1804289383
Content-type: message/rfc822

Return-path: <beta@example.com>
From: Beta <beta@example.com>
To: {recipient}
Subject: Your invitation to the beta
Message-ID: <{message_id}>
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

Your code is ABCD-EFGH-JKMN-PQRS.

--1764152103-eximdsn-1804289383--
""".replace("\n", "\r\n").encode()


def exim_plain(recipient: str, message_id: str) -> bytes:
    """Exim without DSN support: free text, the original quoted after a marker line."""
    return f"""Return-path: <>
From: Mail Delivery System <Mailer-Daemon@old.example.net>
To: beta@example.com
Subject: Mail delivery failed: returning message to sender
Date: Thu, 26 Nov 2026 10:20:00 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    host mx.example.org [198.51.100.7]: 550 No such user here

------ This is a copy of the message, including all the headers. ------

Return-path: <beta@example.com>
From: Beta <beta@example.com>
To: {recipient}
Subject: Your invitation to the beta
Message-ID: <{message_id}>

Your code is ABCD-EFGH-JKMN-PQRS.
""".replace("\n", "\r\n").encode()


def gmail(recipient: str, message_id: str) -> bytes:
    """Gmail's "Address not found": text and HTML for people, then the machine-readable parts."""
    return f"""Delivered-To: beta@example.com
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: beta@example.com
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
Date: Thu, 26 Nov 2026 02:25:11 -0800 (PST)
Message-ID: <6745a1b7.050a0220.1d2b3c.0042.GMR@mx.google.com>
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000a1b2c3d4e5f60718"; report-type=delivery-status

--000000000000a1b2c3d4e5f60718
Content-Type: multipart/related; boundary="000000000000a1b2c3d4e5f60719"

--000000000000a1b2c3d4e5f60719
Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f6071a"

--000000000000a1b2c3d4e5f6071a
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {recipient} because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

--000000000000a1b2c3d4e5f6071a
Content-Type: text/html; charset="UTF-8"

<html><body><h2>Address not found</h2><p>Your message wasn't delivered to <a>{recipient}</a>.</p></body></html>

--000000000000a1b2c3d4e5f6071a--

--000000000000a1b2c3d4e5f60719--

--000000000000a1b2c3d4e5f60718
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; beta@example.com
Arrival-Date: Thu, 26 Nov 2026 02:25:10 -0800 (PST)
X-Original-Message-ID: <{message_id}>

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (2607:f8b0:4864:20::a2a, the server for the domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp
Last-Attempt-Date: Thu, 26 Nov 2026 02:25:11 -0800 (PST)

--000000000000a1b2c3d4e5f60718
Content-Type: message/rfc822

From: Beta <beta@example.com>
To: {recipient}
Subject: Your invitation to the beta
Message-ID: <{message_id}>
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

Your code is ABCD-EFGH-JKMN-PQRS.

--000000000000a1b2c3d4e5f60718--
""".replace("\n", "\r\n").encode()


def exchange(recipient: str, message_id: str) -> bytes:
    """Exchange / Microsoft 365 "Undeliverable:", with only the original's headers."""
    return f"""From: postmaster@contoso.example
To: beta@example.com
Date: Thu, 26 Nov 2026 10:30:12 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="b1_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b"
Content-Language: en-US
Message-ID: <7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b@contoso.example>
Subject: Undeliverable: Your invitation to the beta
Auto-Submitted: auto-replied
MIME-Version: 1.0

--b1_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="b2_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b"

--b2_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {recipient} couldn't be delivered.
The email address wasn't found at the destination domain.

Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient n=
ot found by SMTP address lookup'

--b2_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b--

--b1_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mail.example.com
Arrival-Date: Thu, 26 Nov 2026 10:30:10 +0000

Original-Recipient: rfc822;{recipient}
Final-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup
X-Display-Name: {recipient}

--b1_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b
Content-Type: text/rfc822-headers

From: Beta <beta@example.com>
To: <{recipient}>
Subject: Your invitation to the beta
Date: Thu, 26 Nov 2026 10:30:05 +0000
Message-ID: <{message_id}>
MIME-Version: 1.0

--b1_7a4f0c3e-5d2b-4e8a-9f10-2c3d4e5f6a7b--
""".replace("\n", "\r\n").encode()


def delayed(recipient: str, message_id: str) -> bytes:
    """A soft bounce: Postfix still trying (Action: delayed, 4.x.x)."""
    return (
        postfix(recipient, message_id, status="4.2.2")
        .replace(b"Action: failed", b"Action: delayed")
        .replace(b"Subject: Undelivered Mail Returned to Sender", b"Subject: Delayed Mail")
    )


def complaint(recipient: str, message_id: str) -> bytes:
    """An ARF spam complaint (RFC 5965) from a feedback loop."""
    return f"""From: <staff@hotmail.example>
Date: Thu, 26 Nov 2026 11:00:00 +0000
Subject: complaint about message from 192.0.2.1
To: abuse@example.com
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <{recipient}>

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Beta <beta@example.com>
To: {recipient}
Subject: Your invitation to the beta
Message-ID: <{message_id}>

Your code is ABCD-EFGH-JKMN-PQRS.
--part1_13d.2e68ed54_boundary--
""".replace("\n", "\r\n").encode()


def newsletter() -> bytes:
    """Not a bounce at all: mail that landed in the bounce mailbox."""
    return b"From: news@example.org\r\nTo: beta@example.com\r\nSubject: Our weekly news\r\n\r\nHello.\r\n"
