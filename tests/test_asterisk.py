"""Asterisk real-speech check set: transcript rules on real lines, and a small real preparation."""
from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from conftest import REPO, needs_setup
from lm2am.corpus.asterisk import (PART, AsteriskConfig, find_sounds_dir, find_transcripts,
                                   normalize_prompt, prepare_asterisk, read_transcripts)
from lm2am.errors import Lm2amError


def _have_asterisk() -> bool:
    try:
        find_sounds_dir()
        find_transcripts()
        return True
    except Lm2amError:
        return False


needs_asterisk = needs_setup(_have_asterisk(), "Debian asterisk-core-sounds-en-g722 / asterisk-core-sounds-en")


# (prompt name, line of core-sounds-en.txt, expected text or drop reason)
REAL_LINES = [
    ("agent-newlocation", "Please enter a new extension, followed by pound.",
     "PLEASE ENTER A NEW EXTENSION FOLLOWED BY POUND"),
    ("vm-Cust1", "folder 5", "FOLDER FIVE"),
    ("dictate/both_help", "press * to toggle pause, press # to enter a new dictation filename",
     "PRESS STAR TO TOGGLE PAUSE PRESS POUND TO ENTER A NEW DICTATION FILENAME"),
    ("confbridge-binaural-on", "3D audio enabled", "THREE D AUDIO ENABLED"),
    ("conf-adminmenu-menu8", "Press 1 to list users, 3 to mute or umute all non-administrator users",
     "PRESS ONE TO LIST USERS THREE TO MUTE OR UNMUTE ALL NON ADMINISTRATOR USERS"),
    ("digits/h-40", "fourtieth", "FORTIETH"),
    ("spy-iax2", 'IAX (note: does not say "2")', "IAX"),
    ("vm-intro", "Please leave your message after the tone. (simple tone sound plays)",
     "PLEASE LEAVE YOUR MESSAGE AFTER THE TONE"),
    ("priv-callee-options", 'Dial 4 to send this caller to a polite "don\'t call" menu',
     "DIAL FOUR TO SEND THIS CALLER TO A POLITE DON'T CALL MENU"),
    ("confbridge-has-joined", "...has joined the conference.", "HAS JOINED THE CONFERENCE"),
    ("digits/a-m", "A.M.", "A M"),
    ("ascending-2tone", "[ascending tones]", "non_speech"),
    ("confbridge-join", "<beep ascending>", "non_speech"),
    ("tt-monkeys", "[sound of monkeys screaming]", "non_speech"),
    ("silence/1", "(1 second of silence)", "non_speech"),
    ("letters/at", "at [@]", "letters"),
    ("letters/a", "a", "letters"),
    ("demo-instruct", "dial extension 8500 to enter the voicemail system", "ambiguous_reading"),
    ("demo-instruct", "have at least a 28.8 kilobit modem", "ambiguous_reading"),
    ("spy-h323", "H.323", "ambiguous_reading"),
    ("demo-moreinfo", "For more information, visit www.asterisk.org.", "ambiguous_reading"),
    ("dir-multi1", "...", "empty_text"),
]


@pytest.mark.parametrize("name, text, expected", REAL_LINES)
def test_normalize_prompt(name: str, text: str, expected: str):
    norm, reason = normalize_prompt(name, text)
    if expected.islower():
        assert (norm, reason) == ("", expected)
    else:
        assert (norm, reason) == (expected, None)


def test_letters_kept_on_request():
    assert normalize_prompt("letters/at", "at [@]", keep_letters=True) == ("AT", None)
    assert normalize_prompt("letters/exclaimation-point", "exclaimation-point [!]",
                            keep_letters=True) == ("EXCLAMATION POINT", None)
    assert normalize_prompt("letters/space", "space [ ]", keep_letters=True) == ("SPACE", None)


def test_read_transcripts(tmp_path: Path):
    p = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(p, "wt") as f:
        f.write("; Core Asterisk Sounds in English\n\nbeep: [a beep]\n"
                "priv-callpending: I have a caller waiting, who introduces themselves as:\n"
                "vm-leavemsg:  Press 5 to leave a message\n")
    t = read_transcripts(p)
    assert t == {"beep": "[a beep]",
                 "priv-callpending": "I have a caller waiting, who introduces themselves as:",
                 "vm-leavemsg": "Press 5 to leave a message"}


def test_missing_transcripts_says_how_to_get_them(tmp_path: Path):
    with pytest.raises(Lm2amError, match="asterisk-core-sounds-en"):
        find_transcripts(tmp_path / "core-sounds-en.txt.gz")
    with pytest.raises(Lm2amError, match="asterisk-core-sounds-en-g722"):
        find_sounds_dir(tmp_path)


def test_config_rejects_bad_ids():
    with pytest.raises(ValueError):
        AsteriskConfig(speaker_id="9-1")


@needs_asterisk
def test_real_transcripts_all_handled():
    """Every real transcript either normalizes to A-Z/' words or is dropped with a reason."""
    texts = read_transcripts(find_transcripts())
    assert len(texts) > 500
    reasons = {}
    for name, text in texts.items():
        norm, reason = normalize_prompt(name, text)
        reasons[reason] = reasons.get(reason, 0) + 1
        if reason is None:
            assert norm and set(norm) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' "), (name, norm)
    assert reasons[None] > 450 and reasons["non_speech"] >= 10 and reasons["letters"] > 40


@needs_asterisk
def test_prepare_real_prompts(tmp_path: Path):
    stats = prepare_asterisk(tmp_path / "corpus", AsteriskConfig(max_prompts=5))
    assert stats["kept"] == 5 and stats["prompts_found"] > 500
    assert stats["dropped"]["max_prompts"] > 400
    part = tmp_path / "corpus" / PART
    chap = part / "9000" / "1"
    trans = (chap / "9000-1.trans.txt").read_text().splitlines()
    assert [line.split()[0] for line in trans] == [f"9000-1-{i:04d}" for i in range(5)]
    # sorted prompt names: the first real prompts are activated, added, agent-alreadyon, ...
    assert trans[0] == "9000-1-0000 ACTIVATED"
    for line in trans:
        utt, text = line.split(maxsplit=1)
        assert text == text.upper() and not any(c.isdigit() or c in ".,#*" for c in text)
        info = sf.info(str(chap / f"{utt}.flac"))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.3
    rows = (part / "prompt_map.tsv").read_text().splitlines()
    assert rows[0] == "utt_id\tprompt\toriginal_text"
    assert rows[1] == "9000-1-0000\tactivated\tActivated."
    assert stats["minutes"] > 0 and stats["words"] == sum(len(t.split()) - 1 for t in trans)


@needs_asterisk
def test_cli_config_and_done_marker(tmp_path: Path):
    conf = tmp_path / "x.yaml"
    conf.write_text("asterisk:\n  max_prompts: 2\n  speaker_id: '42'\n")
    cmd = [sys.executable, str(REPO / "local/asterisk/prepare.py"), "--config", str(conf),
           str(tmp_path / "corpus")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 kept" in r.stdout
    assert (tmp_path / "corpus" / PART / "42" / "1" / "42-1-0001.flac").is_file()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert "already done" in r.stdout
    conf.write_text("asterisk:\n  max_prompts: 2\n  bogus: 1\n")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "unknown key 'bogus'" in r.stderr
