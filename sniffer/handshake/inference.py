"""TLS 1.3 without keys: what record sizes, record order and TCP teardown say about client auth.

After the server's flight the client answers with its own: only a Finished when no CertificateRequest
was sent; an empty Certificate and a Finished when it was declined; a Certificate, a CertificateVerify
and a Finished when a certificate was presented; or a fatal alert of its own when it refuses the
server. Under an AEAD each of those has a length that the cipher suite fixes exactly (PROTOCOL.md), up to
the sender's record padding. What the server sends next — tickets or data, or an alert-sized record and a
close — and what the client did meanwhile tell whether the server accepted the flight.

Two parts, kept apart so that each can be checked on stacks that did not shape it:

* the *pattern* of a connection (:func:`patterns`) is read from protocol facts only: the exact sizes of
  Finished, empty Certificate and alert under the padding schemes met in practice (none; a constant 16
  bytes, as JSSE adds; 16-byte blocks, as mbedTLS pads), the scheme found from each side's own Finished;
  the client's first records (a flight padded to 32 bytes or more is not classified); how many records the
  server sent after the client's flight began and whether the first and the last were alert-sized;
  whether the server closed; whether its last record came at once (within ten times the client's own
  turnaround, or 0.1 s) or later; whether the client's own alert-sized record (a close_notify or a fatal
  alert) crossed the server's last record; whether the client sent data after its Finished; resumption.
  Each pattern is a list of keys from the finest to the coarsest (the flight alone, last).
* which answer a pattern gives, and at what confidence, is the table ``CALIBRATION``, fitted by
  ``bench/evaluate_inference.py --fit`` on the multi-stack corpus (``bench/inference_corpus.py``): ``high``
  only for a key that was right every time, at least 20 times and on at least 3 stacks; ``medium`` 97 %,
  10 times, 3 stacks; ``low`` 75 %. :func:`max_confidence` caps what ambiguity allows whatever the corpus
  says (padding, a flight recognised only by its length, unknown server padding, an unrequested alert after
  tickets, the flight alone: never ``high``, some never above ``low``; unrecognised flights: no answer). The
  finest key the table holds answers; a key seen mixed gives no answer rather than letting a coarser key
  guess. A padded flight told apart exactly falls back on the unpadded flight's keys (the server's answer
  means the same), capped as the padded flight is (:func:`judge`). The evaluation refits the table
  without each stack in turn to measure it on stacks it was not fitted on.

Every answer's ``basis`` starts with ``pattern=...``: the key it was judged by, then the coarser ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Generic, TypeVar

from helloscope.parsers.registry import APPLICATION_DATA
from helloscope.sniffer.report.model import RecordTrace
from helloscope.sniffer.vocabulary import CertificateState, Confidence, Outcome, Sender, Verdict

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
ABSENT, EMPTY, PRESENTED = CertificateState.ABSENT, CertificateState.EMPTY, CertificateState.PRESENTED
_RANK: Final = {HIGH: 3, MEDIUM: 2, LOW: 1}
_Value = TypeVar("_Value", bool, CertificateState, Outcome, Verdict)

_SHA384_SUITES: Final = frozenset({0x1302})
_SHORT_TAG_SUITES: Final = frozenset({0x1305})  # AES-128-CCM-8: 8-byte tag
_EMPTY_CERTIFICATE: Final = 4 + 1 + 3  # header, empty request context, empty certificate_list
_ALERT: Final = 2
_INNER_TYPE: Final = 1
# Padding schemes, in the order they are tried: none, a constant 16 bytes (JSSE), a block of 16 bytes
# (mbedTLS). Larger blocks leave too few distinct sizes: such flights are not classified at all.
SCHEMES: Final = ("x", "c16", "b16")
# Lengths that are all multiples of this (after the tag), with no exact Finished, are taken as padded.
_PADDING_BLOCK: Final = 32

# Outcomes an answer can carry (the report's own values).

# Set by bench/evaluate_inference.py only: report every pattern (at ``low``, with a placeholder value) so
# that the table can be refitted from the reports.
UNCALIBRATED = False


@dataclass(frozen=True, slots=True)
class Sizes:
    """Ciphertext lengths of the messages that tell the flights apart, for one cipher suite, unpadded."""

    finished: int
    empty_certificate: int
    empty_certificate_and_finished: int
    alert: int
    tag: int

    @classmethod
    @lru_cache(maxsize=64)  # asked for every keyless TLS 1.3 connection; a capture uses a handful of suites
    def for_suite(cls, cipher_suite: int) -> Sizes:
        tag = 8 if cipher_suite in _SHORT_TAG_SUITES else 16
        finished_body = 4 + (48 if cipher_suite in _SHA384_SUITES else 32)
        overhead = _INNER_TYPE + tag
        return cls(
            finished=finished_body + overhead,
            empty_certificate=_EMPTY_CERTIFICATE + overhead,
            empty_certificate_and_finished=_EMPTY_CERTIFICATE + finished_body + overhead,
            alert=_ALERT + overhead,
            tag=tag,
        )

    def padded(self, length: int, scheme: str) -> int:
        """The record length of an unpadded ``length`` under ``scheme``."""
        inner = length - self.tag
        if scheme == "x":
            return length
        if scheme == "c16":
            return length + 16
        block = int(scheme[1:])
        return -(-inner // block) * block + self.tag


@dataclass(frozen=True, slots=True)
class Guess(Generic[_Value]):
    value: _Value
    confidence: Confidence
    basis: str


@dataclass(frozen=True, slots=True)
class Inference:
    certificate_request: Guess[bool] | None
    client_certificate: Guess[CertificateState] | None
    server_verdict: Guess[Verdict] | None
    outcome: Guess[Outcome] | None = None  # authenticated / declined / rejected / failed / not_requested


@dataclass(frozen=True, slots=True)
class Patterns:
    flight: tuple[str, ...]  # keys for the CertificateRequest and the client certificate, finest first
    outcome: tuple[str, ...]  # keys for the outcome, finest first
    sizes: str  # the record lengths it rests on, for the basis


def _coarse(flight_class: str, scheme: str) -> str:
    """F (Finished only), E (an empty Certificate), C (a chain), C? (something longer), A (the client's
    alert), none, or ? (unrecognised or ambiguous); ``p`` appended when the client pads (c16, b16)."""
    if flight_class == "F":
        coarse = "F"
    elif flight_class in ("E+F", "E,F", "E,?"):
        coarse = "E"
    elif flight_class == "C,CV,F":
        coarse = "C"
    elif flight_class.startswith("C?"):
        return "C?"
    elif flight_class in ("A", "none"):
        coarse = flight_class
    else:
        return "?"
    return coarse + ("p" if scheme in ("c16", "b16") else "")


@lru_cache(maxsize=1024)  # asked three times per keyless TLS 1.3 connection, of a few hundred distinct keys
def max_confidence(field: str, key: str) -> Confidence | None:
    """The most a pattern may earn, whatever the corpus says: ambiguity caps it.

    An unrecognised or ambiguous flight (``?``) gives no answer. A padded flight (``p``), a flight that is
    only "longer than an empty certificate" (``C?``) or, for the outcome, a server whose padding is not
    known to be none (``sc16``, ``sb16``, ``s?``: its alert size is a guess) is never ``high``.
    """
    flight = key.split("|")[0].split("@")[0]
    if flight.startswith("?") or "/" in flight or flight == "none":
        return None  # ambiguous, unrecognised, or no client record at all (e.g. QUIC, or a vanished client)
    capped = flight.endswith("p") or flight.startswith("C?") or "@c16" in key or "@b16" in key or "@?" in key
    if field == "outcome":
        parts = key.split("|")
        if not any(part.startswith("n") for part in parts):
            return LOW  # the flight alone, whatever the server did next: a prior, not an observation
        if "da" in parts and "x1" not in parts:
            # Tickets or data, then an alert-sized record nobody asked for: a graceful close, a late
            # rejection (tlslite sends tickets first) or a complaint about the client's bare FIN (s_server
            # answers tstclnt's with decode_error): the sizes cannot tell.
            return LOW
        server = next((part for part in parts if part.startswith("s")), "sx")
        capped = capped or server != "sx"
    return MEDIUM if capped else HIGH


def weakest(*confidences: Confidence) -> Confidence:
    return min(confidences, key=_RANK.__getitem__)


def _scheme_of(lengths: list[int], sizes: Sizes) -> str:
    """The padding scheme under which one of ``lengths`` is an exact Finished ("?" if none)."""
    for scheme in SCHEMES:
        if sizes.padded(sizes.finished, scheme) in lengths:
            return scheme
    return "?"


_FLIGHT_LENGTH: Final = {"F": 1, "E+F": 1, "E,F": 2, "C,CV,F": 3, "A": 1}
# Coarse flights recognised exactly under a client's padding (see _coarse).
_PADDED_FLIGHTS: Final = frozenset({"Fp", "Ep", "Cp"})


def _flight_class(flight: list[int], sizes: Sizes) -> tuple[str, str]:
    """(class, scheme) of the client's first records after the server's flight."""
    if not flight:
        return "none", "-"
    if sizes.finished not in flight and all((length - sizes.tag) % _PADDING_BLOCK == 0 for length in flight):
        return "?", "?"  # padded to 32 bytes or more: sizes say nothing
    first = flight[0]
    for scheme in SCHEMES:

        def p(length: int, scheme: str = scheme) -> int:
            return sizes.padded(length, scheme)

        found = []
        if first == p(sizes.alert):
            found.append("A")
        if first == p(sizes.finished):
            found.append("F")
        if first == p(sizes.empty_certificate_and_finished):
            found.append("E+F")
        if first == p(sizes.empty_certificate):
            found.append("E,F" if len(flight) > 1 and flight[1] == p(sizes.finished) else "E,?")
        if not found and len(flight) >= 3 and flight[2] == p(sizes.finished) and flight[1] < first:
            found.append("C,CV,F")
        if found:
            return "/".join(found), scheme
    largest = max(sizes.padded(sizes.empty_certificate_and_finished, scheme) for scheme in SCHEMES)
    if first > largest:
        return f"C?{min(len(flight), 3)}", "?"
    return "?", "?"


def patterns(records: tuple[RecordTrace, ...], cipher_suite: int, resumed: bool, server_closed: bool) -> Patterns:
    # Written with list methods rather than generators: this runs for every keyless TLS 1.3 connection,
    # over up to MAX_TRACED_RECORDS records.
    sizes = Sizes.for_suite(cipher_suite)
    protected = [record for record in records if record.content_type == APPLICATION_DATA]
    senders = [record.sender for record in protected]
    start = senders.index(CLIENT) if CLIENT in senders else None
    server_flight = [record.length for record in protected[: start if start is not None else len(protected)]]
    server_scheme = _scheme_of(server_flight, sizes)
    if start is None:
        flight: list[int] = []
        after: list[RecordTrace] = []
    else:
        try:
            end = senders.index(SERVER, start)
        except ValueError:
            end = len(protected)
        flight = [record.length for record in protected[start:end]]
        after = protected[start:]
    flight_class, client_scheme = _flight_class(flight, sizes)
    # The flight ends with the client's Finished: what follows in the same burst (its data, or the
    # close_notify of a client that closes at once) is the client's later behaviour.
    flight_end = _FLIGHT_LENGTH.get(flight_class, len(flight))
    resumed_part = f"r{int(resumed)}"
    coarse = _coarse(flight_class, client_scheme)
    flight_keys = (f"{flight_class}@{client_scheme}|{resumed_part}", f"{coarse}|{resumed_part}")

    server_alert = sizes.padded(sizes.alert, server_scheme if server_scheme != "?" else "x")
    client_alert = sizes.padded(sizes.alert, client_scheme if client_scheme not in ("?", "-") else "x")
    server_after = [record for record in after if record.sender == SERVER]
    count = str(len(server_after)) if len(server_after) < 3 else "3+"
    # Whether the server's first and last records after the flight are alert-sized (a) or not (d).
    shape = "-"
    if server_after:
        first, last = server_after[0].length, server_after[-1].length
        shape = ("a" if first == server_alert else "d") + ("a" if last == server_alert else "d")
    last_time = server_after[-1].timestamp if server_after else None
    client_later = [record for record in after[flight_end:] if record.sender == CLIENT]
    later_lengths = [record.length for record in client_later]
    alerts = later_lengths.count(client_alert)
    crossing = (
        alerts > 0
        and last_time is not None
        and any(record.length == client_alert and record.timestamp <= last_time for record in client_later)
    )
    client_data = alerts < len(later_lengths)
    # Timing: a rejection answers the client's flight at once; an idle or application close comes later.
    # "At once" is relative to how long the client took to answer the server's flight (a round trip plus
    # the client's work): within ten times that, or 0.1 s, whichever is longer.
    timing = "t-"
    if server_after and start is not None and start > 0:
        turnaround = protected[start].timestamp - protected[start - 1].timestamp
        flight_done = protected[start + max(flight_end, 1) - 1].timestamp
        delay = server_after[-1].timestamp - flight_done
        timing = "tq" if delay <= max(10 * turnaround, 0.1) else "tl"
    # From the finest key to the coarsest: the table answers from the first key it holds.
    # The server's padding as a class: none (x), padded (p: JSSE's 16 bytes or 16-byte blocks, whose alert
    # sizes are known the same way), or unknown (?: its Finished shares a record with other messages).
    server_padding = {"x": "x", "?": "?"}.get(server_scheme, "p")
    response = f"s{server_padding}|n{count}|{shape}|c{int(server_closed)}|{timing}"
    answered = (
        f"|{resumed_part}|s{server_scheme}|n{count}|{shape}|c{int(server_closed)}|{timing}"
        f"|x{int(crossing)}|d{int(client_data)}",
        f"|{resumed_part}|{response}|x{int(crossing)}|d{int(client_data)}",
        f"|{resumed_part}|{response}|x{int(crossing)}",
    )
    # A padded flight whose messages were still told apart exactly (Ep, Fp, Cp) is the same flight as an
    # unpadded one: what the server did next means the same whoever padded the client's records. Its
    # keys fall back on the unpadded flight's (whose answers judge() caps as the padded flight's own),
    # so that a stack that pads (JSSE: 16 bytes on every record) is judged by what the server did, not
    # left unanswered because no other stack pads the same way.
    unpadded = (coarse[:-1],) if coarse in _PADDED_FLIGHTS else ()
    outcome_keys = (
        *(coarse + part for part in answered),
        *(flight + part for flight in unpadded for part in answered),
        f"{coarse}|{resumed_part}|s{server_padding}",
    )
    basis = (
        "client_flight="
        + "+".join(map(str, flight[:4]))
        + ",server_after_flight="
        + "+".join(str(record.length) for record in server_after[:3])
        + (",server_closed" if server_closed else "")
    )
    return Patterns(flight_keys, outcome_keys, basis)


# Fitted by bench/evaluate_inference.py --fit (see the module docstring); field -> pattern -> (value, level).
# (None, None): a pattern seen at least 4 times with no answer right 75 % of the time: no answer.
CALIBRATION: Final[dict[str, dict[str, tuple[object, str | None]]]] = {
    "certificate_request": {
        "A@c16|r0": (False, "medium"),
        "A@x|r0": (False, "high"),
        "A@x|r1": (False, "medium"),
        "Ap|r0": (False, "medium"),
        "A|r0": (False, "high"),
        "A|r1": (False, "medium"),
        "C,CV,F@b16|r0": (True, "medium"),
        "C,CV,F@c16|r0": (True, "medium"),
        "C,CV,F@x|r0": (True, "high"),
        "C?1@?|r0": (True, "medium"),
        "C?2@?|r0": (True, "medium"),
        "C?3@?|r0": (True, "medium"),
        "C?|r0": (True, "medium"),
        "Cp|r0": (True, "medium"),
        "C|r0": (True, "high"),
        "E+F@x|r0": (True, "high"),
        "E,?@c16|r0": (True, "medium"),
        "E,?@x|r0": (True, "medium"),
        "E,F@c16|r0": (True, "medium"),
        "E,F@x|r0": (True, "high"),
        "Ep|r0": (True, "medium"),
        "E|r0": (True, "high"),
        "F@c16|r0": (False, "medium"),
        "F@c16|r1": (False, "low"),
        "F@x|r0": (False, "high"),
        "F@x|r1": (False, "high"),
        "Fp|r0": (False, "medium"),
        "Fp|r1": (False, "low"),
        "F|r0": (False, "high"),
        "F|r1": (False, "high"),
    },
    "client_certificate": {
        "C,CV,F@b16|r0": ("presented", "medium"),
        "C,CV,F@c16|r0": ("presented", "medium"),
        "C,CV,F@x|r0": ("presented", "high"),
        "C?1@?|r0": ("presented", "medium"),
        "C?2@?|r0": ("presented", "medium"),
        "C?3@?|r0": ("presented", "medium"),
        "C?|r0": ("presented", "medium"),
        "Cp|r0": ("presented", "medium"),
        "C|r0": ("presented", "high"),
        "E+F@x|r0": ("empty", "high"),
        "E,?@c16|r0": ("empty", "medium"),
        "E,?@x|r0": ("empty", "medium"),
        "E,F@c16|r0": ("empty", "medium"),
        "E,F@x|r0": ("empty", "high"),
        "Ep|r0": ("empty", "medium"),
        "E|r0": ("empty", "high"),
        "F@c16|r0": ("absent", "medium"),
        "F@c16|r1": ("absent", "low"),
        "F@x|r0": ("absent", "high"),
        "F@x|r1": ("absent", "high"),
        "Fp|r0": ("absent", "medium"),
        "Fp|r1": ("absent", "low"),
        "F|r0": ("absent", "high"),
        "F|r1": ("absent", "high"),
    },
    "outcome": {
        "Ap|r0|s?": ("failed", "low"),
        "Ap|r0|s?|n0|-|c1|t-|x0": ("failed", "low"),
        "Ap|r0|s?|n0|-|c1|t-|x0|d0": ("failed", "low"),
        "Ap|r0|sx": ("failed", "low"),
        "Ap|r0|sx|n0|-|c1|t-|x0": ("failed", "medium"),
        "Ap|r0|sx|n0|-|c1|t-|x0|d0": ("failed", "medium"),
        "A|r0|s?": ("failed", "low"),
        "A|r0|s?|n0|-|c1|t-|x0": ("failed", "medium"),
        "A|r0|s?|n0|-|c1|t-|x0|d0": ("failed", "medium"),
        "A|r0|s?|n1|dd|c0|tq|x0": ("failed", "low"),
        "A|r0|s?|n1|dd|c0|tq|x0|d0": ("failed", "low"),
        "A|r0|sc16|n0|-|c0|t-|x0|d0": ("failed", "low"),
        "A|r0|sp": ("failed", "low"),
        "A|r0|sp|n0|-|c0|t-|x0": ("failed", "low"),
        "A|r0|sp|n0|-|c0|t-|x0|d0": ("failed", "low"),
        "A|r0|sx": ("failed", "low"),
        "A|r0|sx|n0|-|c0|t-|x0": ("failed", "low"),
        "A|r0|sx|n0|-|c0|t-|x0|d0": ("failed", "medium"),
        "A|r0|sx|n0|-|c1|t-|x0": ("failed", "medium"),
        "A|r0|sx|n0|-|c1|t-|x0|d0": ("failed", "high"),
        "A|r0|sx|n2|dd|c0|tq|x0": ("failed", "low"),
        "A|r0|sx|n2|dd|c0|tq|x0|d0": ("failed", "low"),
        "A|r0|sx|n2|dd|c1|tq|x0": ("failed", "low"),
        "A|r0|sx|n2|dd|c1|tq|x0|d0": ("failed", "low"),
        "A|r1|s?": ("failed", "low"),
        "A|r1|s?|n0|-|c1|t-|x0": ("failed", "low"),
        "A|r1|s?|n0|-|c1|t-|x0|d0": ("failed", "low"),
        "A|r1|s?|n1|dd|c0|tq|x0": ("failed", "low"),
        "A|r1|s?|n1|dd|c0|tq|x0|d0": ("failed", "low"),
        "A|r1|sx": ("failed", "low"),
        "A|r1|sx|n0|-|c0|t-|x0": ("failed", "low"),
        "A|r1|sx|n0|-|c0|t-|x0|d0": ("failed", "low"),
        "A|r1|sx|n0|-|c1|t-|x0": ("failed", "low"),
        "A|r1|sx|n0|-|c1|t-|x0|d0": ("failed", "medium"),
        "C?|r0|s?": ("authenticated", "low"),
        "C?|r0|s?|n1|aa|c1|tl|x0": ("authenticated", "low"),
        "C?|r0|s?|n1|aa|c1|tl|x0|d0": ("authenticated", "low"),
        "C?|r0|s?|n1|aa|c1|tq|x0": ("authenticated", "low"),
        "C?|r0|s?|n1|aa|c1|tq|x0|d0": ("authenticated", "low"),
        "C?|r0|s?|n1|dd|c1|tq|x0": ("rejected", "low"),
        "C?|r0|s?|n1|dd|c1|tq|x0|d1": ("rejected", "low"),
        "C?|r0|s?|n2|da|c1|tq|x0": ("authenticated", "low"),
        "C?|r0|s?|n2|da|c1|tq|x0|d0": ("authenticated", "low"),
        "C?|r0|sb16|n3+|da|c0|tl|x0|d1": ("failed", "low"),
        "C?|r0|sp": ("failed", "low"),
        "C?|r0|sp|n3+|da|c0|tl|x0": ("failed", "low"),
        "C?|r0|sp|n3+|da|c0|tl|x0|d1": ("failed", "low"),
        "C?|r0|sx": (None, None),
        "C?|r0|sx|n1|aa|c1|tq|x0": ("rejected", "low"),
        "C?|r0|sx|n1|aa|c1|tq|x0|d0": (None, None),
        "C?|r0|sx|n1|aa|c1|tq|x0|d1": ("rejected", "medium"),
        "C?|r0|sx|n2|aa|c1|tq|x0": ("rejected", "low"),
        "C?|r0|sx|n2|aa|c1|tq|x0|d1": ("rejected", "low"),
        "C?|r0|sx|n2|da|c1|tl|x0": ("authenticated", "low"),
        "C?|r0|sx|n2|da|c1|tl|x0|d0": ("authenticated", "low"),
        "C?|r0|sx|n2|da|c1|tl|x0|d1": ("authenticated", "low"),
        "C?|r0|sx|n2|da|c1|tq|x0": ("authenticated", "low"),
        "C?|r0|sx|n2|da|c1|tq|x0|d1": ("authenticated", "low"),
        "C?|r0|sx|n3+|da|c0|tl|x0": ("failed", "low"),
        "C?|r0|sx|n3+|da|c0|tl|x0|d0": ("failed", "low"),
        "C?|r0|sx|n3+|da|c0|tl|x0|d1": ("failed", "low"),
        "C?|r0|sx|n3+|da|c1|tl|x0": ("authenticated", "low"),
        "C?|r0|sx|n3+|da|c1|tl|x0|d0": ("authenticated", "low"),
        "C?|r0|sx|n3+|da|c1|tl|x0|d1": ("authenticated", "low"),
        "C?|r0|sx|n3+|da|c1|tq|x0": ("authenticated", "low"),
        "C?|r0|sx|n3+|da|c1|tq|x0|d1": ("authenticated", "low"),
        "C?|r0|sx|n3+|da|c1|tq|x1": ("authenticated", "medium"),
        "C?|r0|sx|n3+|da|c1|tq|x1|d1": ("authenticated", "medium"),
        "Cp|r0|s?": ("authenticated", "low"),
        "Cp|r0|s?|n1|aa|c1|tl|x1": ("authenticated", "low"),
        "Cp|r0|s?|n1|aa|c1|tl|x1|d1": ("authenticated", "low"),
        "Cp|r0|s?|n1|aa|c1|tq|x1": ("authenticated", "low"),
        "Cp|r0|s?|n1|aa|c1|tq|x1|d0": ("authenticated", "low"),
        "Cp|r0|s?|n1|aa|c1|tq|x1|d1": ("authenticated", "low"),
        "Cp|r0|s?|n2|da|c1|tl|x1": ("authenticated", "low"),
        "Cp|r0|s?|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "Cp|r0|sb16|n3+|da|c1|tl|x1|d1": ("authenticated", "low"),
        "Cp|r0|sb16|n3+|da|c1|tq|x1|d1": ("authenticated", "low"),
        "Cp|r0|sc16|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "Cp|r0|sp": ("authenticated", "low"),
        "Cp|r0|sp|n2|da|c1|tl|x1": ("authenticated", "low"),
        "Cp|r0|sp|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "Cp|r0|sp|n3+|da|c1|tl|x1": ("authenticated", "low"),
        "Cp|r0|sp|n3+|da|c1|tl|x1|d1": ("authenticated", "low"),
        "Cp|r0|sp|n3+|da|c1|tq|x1": ("authenticated", "low"),
        "Cp|r0|sp|n3+|da|c1|tq|x1|d1": ("authenticated", "low"),
        "Cp|r0|sx": ("authenticated", "low"),
        "Cp|r0|sx|n2|da|c1|tl|x1": ("authenticated", "low"),
        "Cp|r0|sx|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "Cp|r0|sx|n2|da|c1|tl|x1|d1": ("authenticated", "low"),
        "Cp|r0|sx|n2|da|c1|tq|x1": ("authenticated", "low"),
        "Cp|r0|sx|n2|da|c1|tq|x1|d0": ("authenticated", "low"),
        "Cp|r0|sx|n2|dd|c1|tq|x0": ("authenticated", "low"),
        "Cp|r0|sx|n2|dd|c1|tq|x0|d0": ("authenticated", "low"),
        "Cp|r0|sx|n2|dd|c1|tq|x0|d1": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c0|tq|x1": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c0|tq|x1|d0": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c1|tl|x1": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c1|tl|x1|d0": ("authenticated", "medium"),
        "Cp|r0|sx|n3+|da|c1|tl|x1|d1": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c1|tq|x0": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c1|tq|x0|d1": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c1|tq|x1": ("authenticated", "medium"),
        "Cp|r0|sx|n3+|da|c1|tq|x1|d0": ("authenticated", "low"),
        "Cp|r0|sx|n3+|da|c1|tq|x1|d1": ("authenticated", "medium"),
        "C|r0|s?": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c0|tl|x1": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c0|tl|x1|d0": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c0|tq|x1": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c0|tq|x1|d0": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c0|tq|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n1|aa|c1|tl|x1": ("authenticated", "medium"),
        "C|r0|s?|n1|aa|c1|tl|x1|d1": ("authenticated", "medium"),
        "C|r0|s?|n1|aa|c1|tq|x0": ("rejected", "low"),
        "C|r0|s?|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "C|r0|s?|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "C|r0|s?|n1|aa|c1|tq|x1": ("authenticated", "medium"),
        "C|r0|s?|n1|aa|c1|tq|x1|d0": ("authenticated", "medium"),
        "C|r0|s?|n1|aa|c1|tq|x1|d1": ("authenticated", "medium"),
        "C|r0|s?|n1|dd|c0|tl|x1": ("authenticated", "low"),
        "C|r0|s?|n1|dd|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n1|dd|c1|tl|x1": ("authenticated", "low"),
        "C|r0|s?|n1|dd|c1|tl|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n1|dd|c1|tq|x0": ("rejected", "low"),
        "C|r0|s?|n1|dd|c1|tq|x0|d0": ("rejected", "low"),
        "C|r0|s?|n1|dd|c1|tq|x0|d1": ("rejected", "low"),
        "C|r0|s?|n2|da|c0|tl|x1": ("authenticated", "low"),
        "C|r0|s?|n2|da|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n2|da|c0|tq|x1": ("authenticated", "low"),
        "C|r0|s?|n2|da|c0|tq|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n2|da|c1|tl|x1": ("authenticated", "medium"),
        "C|r0|s?|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "C|r0|s?|n2|da|c1|tl|x1|d1": ("authenticated", "medium"),
        "C|r0|s?|n2|da|c1|tq|x0": ("authenticated", "low"),
        "C|r0|s?|n2|da|c1|tq|x0|d1": ("authenticated", "low"),
        "C|r0|s?|n2|da|c1|tq|x1": ("authenticated", "low"),
        "C|r0|s?|n2|da|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n3+|dd|c0|tq|x1": ("authenticated", "low"),
        "C|r0|s?|n3+|dd|c0|tq|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n3+|dd|c1|tl|x1": ("authenticated", "low"),
        "C|r0|s?|n3+|dd|c1|tl|x1|d1": ("authenticated", "low"),
        "C|r0|s?|n3+|dd|c1|tq|x1": ("authenticated", "low"),
        "C|r0|s?|n3+|dd|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|sb16|n3+|da|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sb16|n3+|da|c1|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sb16|n3+|da|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|sc16|n1|aa|c0|tl|x1|d0": ("authenticated", "low"),
        "C|r0|sc16|n1|aa|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sc16|n1|aa|c0|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sc16|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "C|r0|sc16|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "C|r0|sc16|n1|aa|c1|tq|x1|d1": ("rejected", "low"),
        "C|r0|sc16|n2|da|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sc16|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "C|r0|sc16|n2|da|c1|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sc16|n2|da|c1|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sc16|n2|da|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|sc16|n3+|da|c1|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sp": ("authenticated", "low"),
        "C|r0|sp|n1|aa|c0|tl|x1": ("authenticated", "low"),
        "C|r0|sp|n1|aa|c0|tl|x1|d0": ("authenticated", "low"),
        "C|r0|sp|n1|aa|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sp|n1|aa|c0|tq|x1": ("authenticated", "low"),
        "C|r0|sp|n1|aa|c0|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sp|n1|aa|c1|tq|x0": ("rejected", "low"),
        "C|r0|sp|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "C|r0|sp|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "C|r0|sp|n1|aa|c1|tq|x1": ("rejected", "low"),
        "C|r0|sp|n1|aa|c1|tq|x1|d1": ("rejected", "low"),
        "C|r0|sp|n2|da|c0|tl|x1": ("authenticated", "low"),
        "C|r0|sp|n2|da|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sp|n2|da|c1|tl|x1": ("authenticated", "medium"),
        "C|r0|sp|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "C|r0|sp|n2|da|c1|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sp|n2|da|c1|tq|x1": ("authenticated", "low"),
        "C|r0|sp|n2|da|c1|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sp|n2|da|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|sp|n3+|da|c0|tl|x1": ("authenticated", "low"),
        "C|r0|sp|n3+|da|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sp|n3+|da|c1|tl|x1": ("authenticated", "medium"),
        "C|r0|sp|n3+|da|c1|tl|x1|d1": ("authenticated", "medium"),
        "C|r0|sp|n3+|da|c1|tq|x1": ("authenticated", "low"),
        "C|r0|sp|n3+|da|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|sx": ("authenticated", "low"),
        "C|r0|sx|n0|-|c1|t-|x0": ("failed", "low"),
        "C|r0|sx|n0|-|c1|t-|x0|d0": ("failed", "low"),
        "C|r0|sx|n1|aa|c0|tl|x1": ("authenticated", "low"),
        "C|r0|sx|n1|aa|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sx|n1|aa|c1|tl|x1": ("authenticated", "low"),
        "C|r0|sx|n1|aa|c1|tl|x1|d1": ("authenticated", "medium"),
        "C|r0|sx|n1|aa|c1|tq|x0": ("rejected", "high"),
        "C|r0|sx|n1|aa|c1|tq|x0|d0": ("rejected", "high"),
        "C|r0|sx|n1|aa|c1|tq|x0|d1": ("rejected", "high"),
        "C|r0|sx|n1|aa|c1|tq|x1": ("authenticated", "low"),
        "C|r0|sx|n1|aa|c1|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sx|n1|dd|c0|tq|x0": ("authenticated", "low"),
        "C|r0|sx|n1|dd|c0|tq|x0|d0": ("authenticated", "low"),
        "C|r0|sx|n1|dd|c0|tq|x1": ("authenticated", "low"),
        "C|r0|sx|n1|dd|c0|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sx|n2|aa|c0|tq|x0": ("rejected", "low"),
        "C|r0|sx|n2|aa|c0|tq|x0|d1": ("rejected", "low"),
        "C|r0|sx|n2|aa|c1|tq|x0": ("rejected", "low"),
        "C|r0|sx|n2|aa|c1|tq|x0|d0": ("rejected", "low"),
        "C|r0|sx|n2|aa|c1|tq|x0|d1": ("rejected", "low"),
        "C|r0|sx|n2|da|c0|tl|x1": ("authenticated", "low"),
        "C|r0|sx|n2|da|c0|tl|x1|d1": ("authenticated", "low"),
        "C|r0|sx|n2|da|c1|tl|x1": ("authenticated", "medium"),
        "C|r0|sx|n2|da|c1|tl|x1|d0": ("authenticated", "low"),
        "C|r0|sx|n2|da|c1|tl|x1|d1": ("authenticated", "high"),
        "C|r0|sx|n2|da|c1|tq|x1": ("authenticated", "low"),
        "C|r0|sx|n2|da|c1|tq|x1|d0": ("authenticated", "medium"),
        "C|r0|sx|n2|da|c1|tq|x1|d1": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c0|tq|x0": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c0|tq|x0|d0": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c0|tq|x1": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c0|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c1|tq|x0": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c1|tq|x0|d0": ("authenticated", "low"),
        "C|r0|sx|n2|dd|c1|tq|x0|d1": ("authenticated", "low"),
        "C|r0|sx|n3+|da|c0|tl|x1": ("authenticated", "medium"),
        "C|r0|sx|n3+|da|c0|tl|x1|d1": ("authenticated", "high"),
        "C|r0|sx|n3+|da|c0|tq|x1": ("authenticated", "medium"),
        "C|r0|sx|n3+|da|c0|tq|x1|d0": ("authenticated", "low"),
        "C|r0|sx|n3+|da|c0|tq|x1|d1": ("authenticated", "high"),
        "C|r0|sx|n3+|da|c1|tl|x1": ("authenticated", "high"),
        "C|r0|sx|n3+|da|c1|tl|x1|d0": ("authenticated", "medium"),
        "C|r0|sx|n3+|da|c1|tl|x1|d1": ("authenticated", "high"),
        "C|r0|sx|n3+|da|c1|tq|x0": ("authenticated", "low"),
        "C|r0|sx|n3+|da|c1|tq|x0|d1": ("authenticated", "low"),
        "C|r0|sx|n3+|da|c1|tq|x1": ("authenticated", "high"),
        "C|r0|sx|n3+|da|c1|tq|x1|d0": ("authenticated", "high"),
        "C|r0|sx|n3+|da|c1|tq|x1|d1": ("authenticated", "high"),
        "Ep|r0|s?": ("rejected", "low"),
        "Ep|r0|s?|n1|aa|c1|tq|x0": ("rejected", "low"),
        "Ep|r0|s?|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "Ep|r0|s?|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "Ep|r0|sb16|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "Ep|r0|sp": ("rejected", "low"),
        "Ep|r0|sp|n1|aa|c1|tq|x0": ("rejected", "low"),
        "Ep|r0|sp|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "Ep|r0|sx": ("rejected", "low"),
        "Ep|r0|sx|n1|aa|c1|tq|x0": ("rejected", "medium"),
        "Ep|r0|sx|n1|aa|c1|tq|x0|d1": ("rejected", "medium"),
        "Ep|r0|sx|n1|aa|c1|tq|x1": ("rejected", "low"),
        "Ep|r0|sx|n1|aa|c1|tq|x1|d0": ("rejected", "low"),
        "Ep|r0|sx|n2|da|c1|tl|x1": ("declined", "low"),
        "Ep|r0|sx|n2|da|c1|tl|x1|d1": ("declined", "low"),
        "Ep|r0|sx|n2|da|c1|tq|x1": ("declined", "low"),
        "Ep|r0|sx|n2|da|c1|tq|x1|d1": ("declined", "low"),
        "Ep|r0|sx|n2|dd|c1|tq|x0": ("declined", "low"),
        "Ep|r0|sx|n2|dd|c1|tq|x0|d1": ("declined", "low"),
        "Ep|r0|sx|n3+|da|c1|tl|x1": ("declined", "low"),
        "Ep|r0|sx|n3+|da|c1|tl|x1|d1": ("declined", "low"),
        "Ep|r0|sx|n3+|da|c1|tq|x1": ("declined", "low"),
        "Ep|r0|sx|n3+|da|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|s?": (None, None),
        "E|r0|s?|n1|aa|c0|tq|x1": (None, None),
        "E|r0|s?|n1|aa|c0|tq|x1|d0": ("rejected", "low"),
        "E|r0|s?|n1|aa|c0|tq|x1|d1": ("declined", "low"),
        "E|r0|s?|n1|aa|c1|tl|x1": ("declined", "low"),
        "E|r0|s?|n1|aa|c1|tl|x1|d1": ("declined", "low"),
        "E|r0|s?|n1|aa|c1|tq|x0": ("rejected", "medium"),
        "E|r0|s?|n1|aa|c1|tq|x0|d0": ("rejected", "medium"),
        "E|r0|s?|n1|aa|c1|tq|x0|d1": ("rejected", "medium"),
        "E|r0|s?|n1|aa|c1|tq|x1": ("rejected", "low"),
        "E|r0|s?|n1|aa|c1|tq|x1|d0": ("rejected", "medium"),
        "E|r0|s?|n1|aa|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|s?|n1|dd|c0|tl|x1": ("declined", "low"),
        "E|r0|s?|n1|dd|c0|tl|x1|d1": ("declined", "low"),
        "E|r0|s?|n1|dd|c1|tl|x1": ("declined", "low"),
        "E|r0|s?|n1|dd|c1|tl|x1|d1": ("declined", "low"),
        "E|r0|s?|n1|dd|c1|tq|x0": ("rejected", "medium"),
        "E|r0|s?|n1|dd|c1|tq|x0|d0": ("rejected", "low"),
        "E|r0|s?|n1|dd|c1|tq|x0|d1": ("rejected", "medium"),
        "E|r0|s?|n2|da|c1|tl|x1": ("declined", "low"),
        "E|r0|s?|n2|da|c1|tl|x1|d1": ("declined", "medium"),
        "E|r0|s?|n2|da|c1|tq|x1": ("declined", "low"),
        "E|r0|s?|n2|da|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|s?|n3+|dd|c0|tq|x1": ("declined", "low"),
        "E|r0|s?|n3+|dd|c0|tq|x1|d1": ("declined", "low"),
        "E|r0|s?|n3+|dd|c1|tl|x1": ("declined", "low"),
        "E|r0|s?|n3+|dd|c1|tl|x1|d1": ("declined", "low"),
        "E|r0|s?|n3+|dd|c1|tq|x1": ("declined", "low"),
        "E|r0|s?|n3+|dd|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|sb16|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "E|r0|sb16|n1|aa|c1|tq|x0|d1": ("rejected", "low"),
        "E|r0|sc16|n1|aa|c0|tl|x1|d1": ("declined", "low"),
        "E|r0|sc16|n1|aa|c0|tq|x1|d0": ("rejected", "low"),
        "E|r0|sc16|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "E|r0|sc16|n1|aa|c1|tq|x0|d1": ("rejected", "medium"),
        "E|r0|sc16|n1|aa|c1|tq|x1|d0": ("rejected", "low"),
        "E|r0|sc16|n1|aa|c1|tq|x1|d1": ("rejected", "low"),
        "E|r0|sc16|n2|da|c1|tl|x1|d1": ("declined", "low"),
        "E|r0|sc16|n2|da|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|sp": ("rejected", "low"),
        "E|r0|sp|n1|aa|c0|tl|x1": ("declined", "low"),
        "E|r0|sp|n1|aa|c0|tl|x1|d1": ("declined", "low"),
        "E|r0|sp|n1|aa|c0|tq|x1": ("rejected", "low"),
        "E|r0|sp|n1|aa|c0|tq|x1|d0": ("rejected", "low"),
        "E|r0|sp|n1|aa|c1|tq|x0": ("rejected", "medium"),
        "E|r0|sp|n1|aa|c1|tq|x0|d0": ("rejected", "low"),
        "E|r0|sp|n1|aa|c1|tq|x0|d1": ("rejected", "medium"),
        "E|r0|sp|n1|aa|c1|tq|x1": ("rejected", "low"),
        "E|r0|sp|n1|aa|c1|tq|x1|d0": ("rejected", "low"),
        "E|r0|sp|n1|aa|c1|tq|x1|d1": ("rejected", "low"),
        "E|r0|sp|n2|da|c1|tl|x1": ("declined", "low"),
        "E|r0|sp|n2|da|c1|tl|x1|d1": ("declined", "low"),
        "E|r0|sp|n2|da|c1|tq|x1": ("declined", "low"),
        "E|r0|sp|n2|da|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|sx": ("rejected", "low"),
        "E|r0|sx|n1|aa|c0|tl|x1": ("declined", "low"),
        "E|r0|sx|n1|aa|c0|tl|x1|d1": ("declined", "low"),
        "E|r0|sx|n1|aa|c0|tq|x0": ("rejected", "low"),
        "E|r0|sx|n1|aa|c0|tq|x0|d0": ("rejected", "low"),
        "E|r0|sx|n1|aa|c0|tq|x1": ("rejected", "low"),
        "E|r0|sx|n1|aa|c0|tq|x1|d0": ("rejected", "medium"),
        "E|r0|sx|n1|aa|c1|tq|x0": ("rejected", "high"),
        "E|r0|sx|n1|aa|c1|tq|x0|d0": ("rejected", "high"),
        "E|r0|sx|n1|aa|c1|tq|x0|d1": ("rejected", "high"),
        "E|r0|sx|n1|aa|c1|tq|x1": ("rejected", "high"),
        "E|r0|sx|n1|aa|c1|tq|x1|d0": ("rejected", "high"),
        "E|r0|sx|n2|da|c1|tl|x1": ("declined", "low"),
        "E|r0|sx|n2|da|c1|tl|x1|d1": ("declined", "medium"),
        "E|r0|sx|n2|da|c1|tq|x1": ("declined", "low"),
        "E|r0|sx|n2|da|c1|tq|x1|d1": ("declined", "low"),
        "E|r0|sx|n2|dd|c1|tq|x0": ("declined", "low"),
        "E|r0|sx|n2|dd|c1|tq|x0|d1": ("declined", "low"),
        "E|r0|sx|n3+|da|c0|tl|x1": ("declined", "low"),
        "E|r0|sx|n3+|da|c0|tl|x1|d1": ("declined", "medium"),
        "E|r0|sx|n3+|da|c0|tq|x1": ("declined", "low"),
        "E|r0|sx|n3+|da|c0|tq|x1|d1": ("declined", "low"),
        "E|r0|sx|n3+|da|c1|tl|x1": ("declined", "high"),
        "E|r0|sx|n3+|da|c1|tl|x1|d1": ("declined", "high"),
        "E|r0|sx|n3+|da|c1|tq|x1": ("declined", "low"),
        "E|r0|sx|n3+|da|c1|tq|x1|d1": ("declined", "medium"),
        "Fp|r0|s?": ("not_requested", "low"),
        "Fp|r0|s?|n1|aa|c1|tl|x1": ("not_requested", "low"),
        "Fp|r0|s?|n1|aa|c1|tl|x1|d1": ("not_requested", "low"),
        "Fp|r0|s?|n1|aa|c1|tq|x1": ("not_requested", "low"),
        "Fp|r0|s?|n1|aa|c1|tq|x1|d1": ("not_requested", "low"),
        "Fp|r0|sb16|n3+|da|c1|tl|x1|d1": ("not_requested", "low"),
        "Fp|r0|sb16|n3+|da|c1|tq|x1|d1": ("not_requested", "low"),
        "Fp|r0|sp": ("not_requested", "low"),
        "Fp|r0|sp|n3+|da|c1|tl|x1": ("not_requested", "low"),
        "Fp|r0|sp|n3+|da|c1|tl|x1|d1": ("not_requested", "low"),
        "Fp|r0|sp|n3+|da|c1|tq|x1": ("not_requested", "low"),
        "Fp|r0|sp|n3+|da|c1|tq|x1|d1": ("not_requested", "low"),
        "Fp|r0|sx": ("not_requested", "low"),
        "Fp|r0|sx|n0|-|c1|t-|x0": ("not_requested", "low"),
        "Fp|r0|sx|n0|-|c1|t-|x0|d1": ("not_requested", "low"),
        "Fp|r0|sx|n1|aa|c1|tq|x1": ("not_requested", "low"),
        "Fp|r0|sx|n1|aa|c1|tq|x1|d1": ("not_requested", "low"),
        "Fp|r0|sx|n2|da|c1|tl|x1": ("not_requested", "low"),
        "Fp|r0|sx|n2|da|c1|tl|x1|d1": ("not_requested", "low"),
        "Fp|r0|sx|n2|da|c1|tq|x0": ("not_requested", "low"),
        "Fp|r0|sx|n2|da|c1|tq|x0|d1": ("not_requested", "low"),
        "Fp|r0|sx|n2|da|c1|tq|x1": ("not_requested", "low"),
        "Fp|r0|sx|n2|da|c1|tq|x1|d1": ("not_requested", "low"),
        "Fp|r0|sx|n3+|da|c1|tl|x1": ("not_requested", "low"),
        "Fp|r0|sx|n3+|da|c1|tl|x1|d1": ("not_requested", "medium"),
        "Fp|r0|sx|n3+|da|c1|tq|x1": ("not_requested", "low"),
        "Fp|r0|sx|n3+|da|c1|tq|x1|d1": ("not_requested", "medium"),
        "Fp|r1|sx": ("not_requested", "low"),
        "Fp|r1|sx|n1|aa|c1|tl|x1": ("not_requested", "low"),
        "Fp|r1|sx|n1|aa|c1|tl|x1|d1": ("not_requested", "low"),
        "Fp|r1|sx|n2|da|c1|tl|x1": ("not_requested", "low"),
        "Fp|r1|sx|n2|da|c1|tl|x1|d1": ("not_requested", "low"),
        "Fp|r1|sx|n2|dd|c1|tq|x0": ("not_requested", "low"),
        "Fp|r1|sx|n2|dd|c1|tq|x0|d1": ("not_requested", "low"),
        "F|r0|s?": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c0|tl|x1": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c0|tl|x1|d1": ("not_requested", "medium"),
        "F|r0|s?|n1|aa|c0|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c1|tl|x0": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c1|tl|x0|d1": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c1|tl|x1": ("not_requested", "medium"),
        "F|r0|s?|n1|aa|c1|tl|x1|d1": ("not_requested", "medium"),
        "F|r0|s?|n1|aa|c1|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c1|tq|x1|d0": ("not_requested", "low"),
        "F|r0|s?|n1|aa|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n1|dd|c0|tl|x1": ("not_requested", "low"),
        "F|r0|s?|n1|dd|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n1|dd|c0|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n1|dd|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n1|dd|c1|tl|x1": ("not_requested", "low"),
        "F|r0|s?|n1|dd|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n2|da|c0|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n2|da|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n2|da|c1|tl|x1": ("not_requested", "medium"),
        "F|r0|s?|n2|da|c1|tl|x1|d1": ("not_requested", "medium"),
        "F|r0|s?|n2|da|c1|tq|x0": ("not_requested", "low"),
        "F|r0|s?|n2|da|c1|tq|x0|d1": ("not_requested", "low"),
        "F|r0|s?|n2|da|c1|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n2|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n3+|dd|c0|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n3+|dd|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n3+|dd|c1|tl|x1": ("not_requested", "low"),
        "F|r0|s?|n3+|dd|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r0|s?|n3+|dd|c1|tq|x1": ("not_requested", "low"),
        "F|r0|s?|n3+|dd|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sb16|n3+|da|c0|tl|x0|d1": ("failed", "low"),
        "F|r0|sb16|n3+|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sb16|n3+|da|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sb16|n3+|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n1|aa|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n2|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n2|da|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n2|da|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n2|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n3+|da|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sc16|n3+|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sp": ("not_requested", "low"),
        "F|r0|sp|n1|aa|c0|tl|x1": ("not_requested", "low"),
        "F|r0|sp|n1|aa|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c0|tl|x1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c0|tq|x1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c1|tl|x1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c1|tq|x1": ("not_requested", "low"),
        "F|r0|sp|n2|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sp|n3+|da|c0|tl|x0": ("failed", "low"),
        "F|r0|sp|n3+|da|c0|tl|x0|d1": ("failed", "low"),
        "F|r0|sp|n3+|da|c0|tl|x1": ("not_requested", "low"),
        "F|r0|sp|n3+|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sp|n3+|da|c1|tl|x1": ("not_requested", "medium"),
        "F|r0|sp|n3+|da|c1|tl|x1|d1": ("not_requested", "medium"),
        "F|r0|sp|n3+|da|c1|tq|x1": ("not_requested", "low"),
        "F|r0|sp|n3+|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sx": ("not_requested", "low"),
        "F|r0|sx|n0|-|c1|t-|x0": ("not_requested", "low"),
        "F|r0|sx|n0|-|c1|t-|x0|d1": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c0|tl|x0": ("failed", "low"),
        "F|r0|sx|n1|aa|c0|tl|x0|d1": ("failed", "low"),
        "F|r0|sx|n1|aa|c0|tl|x1": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c0|tq|x1": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c1|tl|x0": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c1|tl|x0|d1": ("not_requested", "low"),
        "F|r0|sx|n1|aa|c1|tl|x1": ("not_requested", "high"),
        "F|r0|sx|n1|aa|c1|tl|x1|d1": ("not_requested", "high"),
        "F|r0|sx|n1|aa|c1|tq|x1": ("not_requested", "medium"),
        "F|r0|sx|n1|aa|c1|tq|x1|d1": ("not_requested", "high"),
        "F|r0|sx|n2|da|c0|tl|x1": ("not_requested", "low"),
        "F|r0|sx|n2|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tl|x0": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tl|x0|d1": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tl|x1": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tl|x1|d1": ("not_requested", "medium"),
        "F|r0|sx|n2|da|c1|tq|x0": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tq|x0|d1": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tq|x1": ("not_requested", "low"),
        "F|r0|sx|n2|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c0|tl|x0": ("failed", "low"),
        "F|r0|sx|n3+|da|c0|tl|x0|d1": ("failed", "low"),
        "F|r0|sx|n3+|da|c0|tl|x1": ("not_requested", "medium"),
        "F|r0|sx|n3+|da|c0|tl|x1|d1": ("not_requested", "high"),
        "F|r0|sx|n3+|da|c0|tq|x1": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c0|tq|x1|d1": ("not_requested", "medium"),
        "F|r0|sx|n3+|da|c1|tl|x0": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c1|tl|x0|d1": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c1|tl|x1": ("not_requested", "high"),
        "F|r0|sx|n3+|da|c1|tl|x1|d1": ("not_requested", "high"),
        "F|r0|sx|n3+|da|c1|tq|x0": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c1|tq|x0|d1": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c1|tq|x1": ("not_requested", "high"),
        "F|r0|sx|n3+|da|c1|tq|x1|d0": ("not_requested", "low"),
        "F|r0|sx|n3+|da|c1|tq|x1|d1": ("not_requested", "high"),
        "F|r1|s?": ("not_requested", "low"),
        "F|r1|s?|n2|da|c0|tq|x1": ("not_requested", "low"),
        "F|r1|s?|n2|da|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r1|s?|n2|da|c1|tl|x1": ("not_requested", "low"),
        "F|r1|s?|n2|da|c1|tl|x1|d1": ("not_requested", "medium"),
        "F|r1|sc16|n2|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r1|sc16|n2|da|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r1|sp": ("not_requested", "low"),
        "F|r1|sp|n2|da|c0|tl|x1": ("not_requested", "low"),
        "F|r1|sp|n2|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r1|sp|n2|da|c1|tl|x1": ("not_requested", "low"),
        "F|r1|sp|n2|da|c1|tl|x1|d1": ("not_requested", "low"),
        "F|r1|sx": ("not_requested", "low"),
        "F|r1|sx|n1|aa|c0|tl|x1": ("not_requested", "low"),
        "F|r1|sx|n1|aa|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r1|sx|n1|aa|c1|tl|x1": ("not_requested", "low"),
        "F|r1|sx|n1|aa|c1|tl|x1|d1": ("not_requested", "medium"),
        "F|r1|sx|n2|da|c0|tl|x1": ("not_requested", "low"),
        "F|r1|sx|n2|da|c0|tl|x1|d1": ("not_requested", "low"),
        "F|r1|sx|n2|da|c0|tq|x1": ("not_requested", "low"),
        "F|r1|sx|n2|da|c0|tq|x1|d1": ("not_requested", "low"),
        "F|r1|sx|n2|da|c1|tl|x1": ("not_requested", "medium"),
        "F|r1|sx|n2|da|c1|tl|x1|d1": ("not_requested", "high"),
        "F|r1|sx|n2|da|c1|tq|x1": ("not_requested", "low"),
        "F|r1|sx|n2|da|c1|tq|x1|d1": ("not_requested", "low"),
        "F|r1|sx|n2|dd|c1|tq|x0": ("not_requested", "low"),
        "F|r1|sx|n2|dd|c1|tq|x0|d1": ("not_requested", "low"),
        "F|r1|sx|n3+|da|c1|tl|x1": ("not_requested", "low"),
        "F|r1|sx|n3+|da|c1|tl|x1|d1": ("not_requested", "low"),
    },
}


def judge(
    field: str, keys: Sequence[str], table: Mapping[str, tuple[object, str | None]]
) -> tuple[int, object, Confidence] | None:
    """(position of the key, value, confidence) the finest key ``table`` holds gives, or None.

    A key seen mixed gives no answer (a coarser key would ignore what made it so). The connection's own
    finest key caps the answer (:func:`max_confidence`): a padded flight answered from its unpadded
    keys earns no more than the padded flight may. bench/evaluate_inference.py judges with this too.
    """
    cap = max_confidence(field, keys[0]) if keys else None
    if cap is None:
        return None
    for position, key in enumerate(keys):
        entry = table.get(key)
        if entry is not None:
            if entry[1] is None:
                return None
            return position, entry[0], weakest(Confidence(entry[1]), cap)
    return None


def _answer(
    field: str, keys: tuple[str, ...], basis: str, placeholder: _Value, typed: Callable[[object], _Value]
) -> Guess[_Value] | None:
    """The table's answer (:func:`judge`); ``pattern=`` lists the keys from the one that answered, ``~``-separated.

    The table is data written by ``bench/evaluate_inference.py --write-table``; ``typed`` turns its plain
    values into the report's vocabulary (an unknown word fails loudly here, not in a SIEM).
    """
    if UNCALIBRATED:
        return Guess(placeholder, LOW, f"pattern={'~'.join(keys)};{basis}")
    answer = _calibrated(field, keys, typed)
    if answer is None:
        return None
    value, confidence, pattern = answer
    return Guess(value, confidence, pattern + basis)


@lru_cache(maxsize=4096)  # three questions per keyless TLS 1.3 connection, of a few hundred distinct key tuples
def _calibrated(
    field: str, keys: tuple[str, ...], typed: Callable[[object], _Value]
) -> tuple[_Value, Confidence, str] | None:
    """The table's answer to ``keys`` as the report states it: value, confidence, and the basis's prefix."""
    judged = judge(field, keys, CALIBRATION.get(field, {}))
    if judged is None:
        return None
    position, value, confidence = judged
    return typed(value), confidence, f"pattern={'~'.join(keys[position:])};"


def infer(records: tuple[RecordTrace, ...], cipher_suite: int, resumed: bool, server_closed: bool) -> Inference:
    """Guesses for one TLS 1.3 connection from the records after its ServerHello."""
    found = patterns(records, cipher_suite, resumed, server_closed)
    request = _answer("certificate_request", found.flight, found.sizes, False, bool)
    certificate = _answer("client_certificate", found.flight, found.sizes, ABSENT, _certificate_state)
    outcome = _answer("outcome", found.outcome, found.sizes, Outcome.UNKNOWN, _outcome)
    verdict = None
    if outcome is not None and outcome.value in _ACCEPTING:
        verdict = Guess(Verdict.ACCEPTED, outcome.confidence, outcome.basis)
    elif outcome is not None and outcome.value == Outcome.REJECTED:
        verdict = Guess(Verdict.ALERT_AND_CLOSE, outcome.confidence, outcome.basis)
    return Inference(request, certificate, verdict, outcome)


_ACCEPTING: Final = frozenset({Outcome.AUTHENTICATED, Outcome.DECLINED, Outcome.NOT_REQUESTED})


def _certificate_state(value: object) -> CertificateState:
    return CertificateState(str(value))


def _outcome(value: object) -> Outcome:
    return Outcome(str(value))


__all__ = ["ABSENT", "EMPTY", "PRESENTED", "Guess", "Inference", "Sizes", "infer", "judge", "patterns", "weakest"]
