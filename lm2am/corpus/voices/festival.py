"""festival in batch mode: one ``festival -b script.scm`` process per batch of utterances."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import List, Sequence, Tuple

import soundfile as sf

from lm2am.corpus.voices import base
from lm2am.corpus.voices.base import SpeakerSpec, Synthesized, Timing, check_engine
from lm2am.corpus.voices.timing import PAUSES, finish, merge_same, to_arpabet, words_from_phones

_FESTIVAL_DIPHONE_STRETCH = 1.1  # what kal/ked set at voice selection; our rate multiplies it

_FESTIVAL_PRELUDE = """
(define (lm2am_synth text wavfile segfile)
  (let ((u (utt.synth (eval (list 'Utterance 'Text text))))
        (i 1) (tok nil) (fd nil))
    ;; Number the input tokens so every segment can name the token (word) it belongs to.
    (set! tok (utt.relation.first u 'Token))
    (while tok (item.set_feat tok "lm2am_idx" i) (set! i (+ i 1)) (set! tok (item.next tok)))
    (utt.save.wave u wavfile 'riff)
    (set! fd (fopen segfile "w"))
    (format fd "ntok %d\\n" (- i 1))
    (mapcar (lambda (s) (format fd "%s %f %s\\n" (item.name s) (item.feat s "end")
               (item.feat s "R:SylStructure.parent.parent.R:Token.parent.lm2am_idx")))
            (utt.relation.items u 'Segment))
    (fclose fd)))
"""


def _festival_voice_setup(spec: SpeakerSpec) -> str:
    lines = [f"(voice_{spec.voice})"]
    if spec.voice == "cmu_us_slt_arctic_hts":
        # hts_engine's -r is a speech-speed factor (>1 faster); it has no working pitch option.
        lines.append(f'(set! hts_engine_params (append hts_engine_params '
                     f'(list (list "-r" {1.0 / spec.rate:.4f}))))')
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch {_FESTIVAL_DIPHONE_STRETCH * spec.rate:.4f})")
        lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean (* {spec.pitch:.4f} "
                     f"(cadr (assoc 'target_f0_mean int_lr_params)))) int_lr_params))")
    return "\n".join(lines)


def synth_festival(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize ``texts`` with one festival pseudo-speaker: one festival process per call."""
    check_engine("festival", spec.voice)
    with tempfile.TemporaryDirectory(prefix="lm2am_fest_") as tmp:
        script = [_FESTIVAL_PRELUDE, _festival_voice_setup(spec)]
        for i, text in enumerate(texts):
            # Texts are normalized (A-Z, apostrophe, space): nothing to escape.
            script.append(f'(lm2am_synth "{text.lower()}" "{tmp}/{i}.wav" "{tmp}/{i}.seg")')
        Path(tmp, "batch.scm").write_text("\n".join(script) + "\n")
        proc = subprocess.run([base.FESTIVAL_BIN, "-b", f"{tmp}/batch.scm"], cwd=tmp,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        for i, text in enumerate(texts):
            wav, seg = Path(tmp, f"{i}.wav"), Path(tmp, f"{i}.seg")
            if not (wav.is_file() and seg.is_file()):
                raise RuntimeError(f"festival ({spec.voice}) produced no audio for {text!r} "
                                   f"(exit {proc.returncode}): {proc.stdout[-500:]}")
            audio, sr = sf.read(wav, dtype="float32")
            lines = seg.read_text().split("\n")
            ntok = int(lines[0].split()[1])
            phones: Timing = []
            phone_words: List[Tuple[float, int, bool]] = []
            for line in lines[1:]:
                if not line.strip():
                    continue
                name, end, idx = line.split()
                phones.append((name, float(end)))
                phone_words.append((float(end), int(float(idx)), name in PAUSES))
            # The wave may be a few ms longer than the last segment: extend the last pause.
            total = len(audio) / sr
            if phones and phones[-1][1] < total:
                phones[-1] = (phones[-1][0], total)
                phone_words[-1] = (total,) + phone_words[-1][1:]
            words = text.split()
            wt = words_from_phones(phone_words, words) if ntok == len(words) else None
            out.append(finish(audio, sr, spec, to_arpabet(merge_same(phones, "pau")), wt))
    return out
