"""Read every HLS playlist the test suite fetched with an independent parser (m3u8 from PyPI)
and check RFC 8216's rules on what it parsed: a playlist our own checker (tests/api/playlists.rs)
passed must parse here to the same segments.

    check_playlists.py DIR      # DIR holds live-*.m3u8 and vod-*.m3u8 (scripts/test fills it)
"""

import pathlib
import sys
from importlib.metadata import version

import m3u8


def check(path: pathlib.Path) -> list[str]:
    text = path.read_text()
    errors = []
    p = m3u8.loads(text)
    uris = [l for l in text.splitlines() if l and not l.startswith("#")]
    errors += check_low_latency(p, text)
    # LL-HLS: the open segment is listed as parts only (no URI yet); the parser makes it a
    # segment without a URI.
    p.segments = [s for s in p.segments if s.uri is not None or not s.parts]
    if len(p.segments) != len(uris):
        errors.append(f"parsed {len(p.segments)} segments, the text lists {len(uris)}")
    if p.target_duration is None or int(p.target_duration) != p.target_duration:
        errors.append(f"target duration {p.target_duration!r} is not an integer")
        return errors
    for s in p.segments:
        # RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer <= target duration.
        if round(s.duration) > p.target_duration:
            errors.append(f"{s.uri}: #EXTINF {s.duration} above target {p.target_duration}")
        if path.name.startswith("live-") and s.current_program_date_time is None:
            errors.append(f"{s.uri}: no program date time")
    if p.playlist_type == "vod" and not p.is_endlist:
        errors.append("VOD playlist without ENDLIST")
    dates = [s.current_program_date_time for s in p.segments if s.current_program_date_time]
    if dates != sorted(dates):
        errors.append("program date times go back")
    return errors


def check_low_latency(p, text: str) -> list[str]:
    """RFC 8216bis rules for LL-HLS playlists (those with EXT-X-PART-INF)."""
    if "#EXT-X-PART-INF:" not in text:
        return []
    errors = []
    target = p.part_inf.part_target
    control = p.server_control
    if control is None or control.can_block_reload != "YES":
        errors.append("LL playlist without EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES")
        return errors
    if control.part_hold_back is None or control.part_hold_back < 2 * target:
        errors.append(f"PART-HOLD-BACK {control.part_hold_back} is under twice PART-TARGET {target}")
    if control.can_skip_until is not None and control.can_skip_until < 6 * p.target_duration:
        errors.append(f"CAN-SKIP-UNTIL {control.can_skip_until} is under six target durations")
    for s in p.segments:
        for part in s.parts:
            # Three decimals are rendered: allow their rounding.
            if part.duration > target + 0.0005:
                errors.append(f"{part.uri}: part of {part.duration} s above PART-TARGET {target}")
    if not p.is_endlist and not p.preload_hint:
        errors.append("a live LL playlist without EXT-X-PRELOAD-HINT")
    return errors


def main() -> int:
    files = sorted(pathlib.Path(sys.argv[1]).glob("*.m3u8"))
    bad = 0
    for f in files:
        for e in check(f):
            print(f"{f.name}: {e}", file=sys.stderr)
            bad += 1
    print(f"{len(files)} playlists read by m3u8 {version('m3u8')}: {bad} problems")
    # A run that fetched no playlist (a filtered run) has nothing to say.
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
