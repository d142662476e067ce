"""flite through ``libflite`` with ctypes: in-process synthesis with exact phone and word timings."""
from __future__ import annotations

import ctypes
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lm2am.corpus.voices.base import SpeakerSpec, Synthesized, Timing, check_engine, find_lib
from lm2am.corpus.voices.timing import PAUSES, finish, merge_same, to_arpabet, words_from_phones

class _CstWave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int),
                ("num_samples", ctypes.c_int), ("num_channels", ctypes.c_int),
                ("samples", ctypes.POINTER(ctypes.c_short))]


class _CstVoice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p),
                ("ffunctions", ctypes.c_void_p), ("utt_init", ctypes.c_void_p)]


_flite: Optional[ctypes.CDLL] = None
_flite_voices: Dict[str, ctypes.POINTER(_CstVoice)] = {}  # type: ignore[valid-type]
_flite_defaults: Dict[str, Tuple[float, float]] = {}
_libc: Optional[ctypes.CDLL] = None


def _load_flite(voice: str):
    global _flite, _libc
    check_engine("flite", voice)
    if _flite is None:
        lib = ctypes.CDLL(find_lib("libflite.so.1"))
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        for name, res, args in [
            ("flite_init", ctypes.c_int, []),
            ("flite_synth_text", vp, [cp, vp]), ("utt_relation", vp, [vp, cp]),
            ("relation_head", vp, [vp]), ("item_next", vp, [vp]),
            ("item_set_string", None, [vp, cp, cp]),
            ("ffeature_string", cp, [vp, cp]), ("ffeature_float", ctypes.c_float, [vp, cp]),
            ("utt_wave", ctypes.POINTER(_CstWave), [vp]), ("delete_utterance", None, [vp]),
            ("feat_set_float", None, [vp, cp, ctypes.c_float]),
            ("get_param_float", ctypes.c_float, [vp, cp, ctypes.c_float]),
        ]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.flite_init()
        _flite = lib
        _libc = ctypes.CDLL("libc.so.6")
    if voice not in _flite_voices:
        vlib = ctypes.CDLL(find_lib(f"libflite_cmu_us_{voice}.so.1"))
        reg = getattr(vlib, f"register_cmu_us_{voice}")
        reg.restype, reg.argtypes = ctypes.POINTER(_CstVoice), [ctypes.c_char_p]
        v = reg(None)
        feats = v.contents.features
        _flite_voices[voice] = v
        _flite_defaults[voice] = (_flite.get_param_float(feats, b"int_f0_target_mean", 100.0),
                                  _flite.get_param_float(feats, b"duration_stretch", 1.0))
    return _flite, _flite_voices[voice]


def _items(fl, utt, relation: bytes):
    it = fl.relation_head(fl.utt_relation(utt, relation))
    while it:
        yield it
        it = fl.item_next(it)


def synth_flite(spec: SpeakerSpec, texts: Sequence[str], seeds: Sequence[int]) -> List[Synthesized]:
    """Synthesize ``texts`` with one flite pseudo-speaker (in process)."""
    fl, v = _load_flite(spec.voice)
    feats = v.contents.features
    f0, stretch = _flite_defaults[spec.voice]
    fl.feat_set_float(feats, b"int_f0_target_mean", f0 * spec.pitch)
    fl.feat_set_float(feats, b"duration_stretch", stretch * spec.rate)
    out = []
    for text, seed in zip(texts, seeds):
        words = text.split()
        _libc.srand(seed & 0x7FFFFFFF)  # clustergen voices draw excitation noise from rand()
        utt = fl.flite_synth_text(text.lower().encode(), ctypes.cast(v, ctypes.c_void_p))
        try:
            tokens = list(_items(fl, utt, b"Token"))
            for i, tok in enumerate(tokens, 1):
                fl.item_set_string(tok, b"lm2am_idx", str(i).encode())
            phones: Timing = []
            phone_words: List[Tuple[float, int, bool]] = []
            for seg in _items(fl, utt, b"Segment"):
                end = float(fl.ffeature_float(seg, b"end"))
                phones.append((fl.ffeature_string(seg, b"name").decode(), end))
                idx = fl.ffeature_string(seg, b"R:SylStructure.parent.parent.R:Token.parent.lm2am_idx")
                phone_words.append((end, int(idx), phones[-1][0] in PAUSES))
            w = fl.utt_wave(utt).contents
            audio = np.ctypeslib.as_array(w.samples, shape=(w.num_samples,)).astype(np.float32) / 32768.0
            sr = w.sample_rate
        finally:
            fl.delete_utterance(utt)
        wt = words_from_phones(phone_words, words) if len(tokens) == len(words) else None
        out.append(finish(audio, sr, spec, to_arpabet(merge_same(phones, "pau")), wt))
    return out
