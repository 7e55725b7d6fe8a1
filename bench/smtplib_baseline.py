"""The send baseline: pre-rendered messages over smtplib connections, nothing else.

`python smtplib_baseline.py HOST PORT MESSAGES.pickle [CONNECTIONS]`: with several connections,
each thread sends every CONNECTIONS-th message over its own connection.
"""

from __future__ import annotations

import pickle
import smtplib
import sys
import threading


def send(host: str, port: int, messages: list[tuple[str, str, bytes]]) -> None:
    with smtplib.SMTP(host, port) as smtp:
        for sender, to, data in messages:
            smtp.sendmail(sender, [to], data)


def main() -> None:
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    connections = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    with open(path, "rb") as handle:
        messages: list[tuple[str, str, bytes]] = pickle.load(handle)
    if connections == 1:
        send(host, port, messages)
        return
    threads = [
        threading.Thread(target=send, args=(host, port, messages[i::connections]))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
