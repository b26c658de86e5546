"""A media-playlist validator for the HLS tests (RFC 8216 + the LL-HLS rules of
draft-pantos-hls-rfc8216bis that the node claims): parse with the `m3u8` package, then check
the rules listed in `validate`. Returns a list of problems (empty = valid)."""

from __future__ import annotations

import re

import m3u8

_PART_URI = re.compile(r"part(\d+)\.(\d+)\.m4s")


def _part_id(uri: str) -> tuple[int, int] | None:
    m = _PART_URI.search(uri)
    return (int(m.group(1)), int(m.group(2))) if m else None


def validate(text: str) -> list[str]:
    errors: list[str] = []
    lines = text.splitlines()
    if not lines or lines[0] != "#EXTM3U":
        return ["first line is not #EXTM3U"]
    if sum(1 for ln in lines if ln.startswith("#EXT-X-VERSION:")) != 1:
        errors.append("exactly one EXT-X-VERSION required")
    pl = m3u8.loads(text)
    target = pl.target_duration
    if target is None:
        return [*errors, "EXT-X-TARGETDURATION missing"]
    if pl.media_sequence is None:
        errors.append("EXT-X-MEDIA-SEQUENCE missing")
    complete = [s for s in pl.segments if s.uri]
    for s in complete:
        if round(s.duration) > target:
            errors.append(f"{s.uri}: EXTINF {s.duration} rounds above the target duration {target}")
        if s.program_date_time is None:
            errors.append(f"{s.uri}: no EXT-X-PROGRAM-DATE-TIME")
    pdts = [s.program_date_time for s in pl.segments if s.program_date_time is not None]
    if pdts != sorted(pdts):
        errors.append("EXT-X-PROGRAM-DATE-TIME goes backwards")
    parts = [(s, p) for s in pl.segments for p in s.parts]
    if parts or "#EXT-X-PART-INF:" in text:
        errors += _validate_ll(pl, text, parts)
    return errors


def _validate_ll(pl: m3u8.M3U8, text: str, parts: list) -> list[str]:
    errors: list[str] = []
    if "#EXT-X-PART-INF:" not in text or pl.part_inf.part_target is None:
        return ["EXT-X-PART without EXT-X-PART-INF"]
    part_target = pl.part_inf.part_target
    sc = pl.server_control
    if sc is None or sc.can_block_reload != "YES":
        errors.append("LL-HLS playlist without CAN-BLOCK-RELOAD=YES")
    elif sc.part_hold_back is None or sc.part_hold_back < 2 * part_target:
        errors.append(f"PART-HOLD-BACK {sc.part_hold_back} below twice PART-TARGET {part_target}")
    if sc is not None and sc.can_skip_until is not None and sc.can_skip_until < 6 * pl.target_duration:
        errors.append("CAN-SKIP-UNTIL below six target durations")
    if "#EXT-X-SKIP:" in text and (sc is None or sc.can_skip_until is None):
        errors.append("EXT-X-SKIP without CAN-SKIP-UNTIL")
    for seg in pl.segments:
        if not seg.parts:
            continue
        for p in seg.parts:
            if p.duration > part_target + 1e-9:
                errors.append(f"{p.uri}: DURATION {p.duration} above PART-TARGET {part_target}")
        ids = [_part_id(p.uri) for p in seg.parts]
        if None in ids or [i[1] for i in ids if i] != list(range(ids[0][1] if ids[0] else 0, len(ids))):
            errors.append(f"parts of a segment are not numbered consecutively: {ids}")
        if seg.uri and ids and ids[0] and ids[0][1] == 0:
            total = sum(p.duration for p in seg.parts)
            if abs(total - seg.duration) > 0.001 * len(seg.parts) + 1e-9:
                errors.append(f"{seg.uri}: parts sum to {total}, EXTINF says {seg.duration}")
        if ids and ids[0] and ids[0][1] == 0 and seg.parts[0].independent != "YES":
            errors.append(f"{seg.parts[0].uri}: a segment's first part must be INDEPENDENT")
    hint = pl.preload_hint
    if hint is None:
        if not pl.is_endlist:
            errors.append("live LL-HLS playlist without EXT-X-PRELOAD-HINT")
        return errors
    if hint.hint_type != "PART":
        errors.append(f"PRELOAD-HINT type {hint.hint_type}")
    hinted = _part_id(hint.uri)
    last_seg = pl.segments[-1] if pl.segments else None
    if hinted is None or last_seg is None:
        errors.append(f"PRELOAD-HINT URI {hint.uri!r} is not a part")
        return errors
    last_part = _part_id(last_seg.parts[-1].uri) if last_seg.parts else None
    if last_seg.uri is None and last_part is not None:
        expected = (last_part[0], last_part[1] + 1)  # the open segment's next part
    elif last_part is not None:
        expected = (last_part[0] + 1, 0)  # the segment just completed: the next one's first part
    else:
        expected = hinted
    if hinted != expected:
        errors.append(f"PRELOAD-HINT names {hinted}, the next part is {expected}")
    return errors
