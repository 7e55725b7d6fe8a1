"""The send baseline: pre-rendered messages over one smtplib connection, nothing else."""

from __future__ import annotations

import pickle
import smtplib
import sys


def main() -> None:
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(path, "rb") as handle:
        messages: list[tuple[str, str, bytes]] = pickle.load(handle)
    with smtplib.SMTP(host, port) as smtp:
        for sender, to, data in messages:
            smtp.sendmail(sender, [to], data)


if __name__ == "__main__":
    main()
