"""Service guides from `content/guides/*.toml`, and finding the right ones for a question.

Chinese questions are cut into words with jieba (with every guide keyword and synonym taught to
it, so "居住证" stays one word); English ones are split into words. A Chinese typo that sounds
like a guide word ("医宝" for "医保") is first spelled as that word, by pinyin. Each question
word is matched fuzzily (rapidfuzz) against the vocabulary of each guide: its title, keywords,
synonyms and the words of its sample questions. A guide scores the share of the question's
meaningful words it explains, weighted by their length; words no guide knows ("今年", "多少钱")
weigh less, so they do not hide a clear subject, and a question about a residence permit still
does not drift to a guide that only shares the word "allowance".
"""

from __future__ import annotations

import logging
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

from rapidfuzz import fuzz

from bot.i18n import CONTENT, LANGUAGES

log = logging.getLogger(__name__)

TOPICS = ("residence", "social", "family", "health")
FIELDS = ("title", "office", "hours", "bring", "steps", "keywords", "synonyms", "questions")
LISTS = ("bring", "steps", "keywords", "synonyms", "questions")
# A question word no guide knows counts this share of its weight: it still dilutes a weak
# match, but "今年的医保在哪交" is about 医保 whatever 今年 says. English words weigh more:
# one shared word ("permit") is weaker evidence there than a shared Chinese word.
UNKNOWN_WEIGHT, UNKNOWN_WEIGHT_LATIN = 0.3, 0.5
_CJK = re.compile(r"[\u4e00-\u9fff]")
_WORD = re.compile(r"[a-z0-9]+")
# Words that say "how / I want / what do I need" rather than what the question is about.
STOPWORDS = {
    "怎么", "怎样", "怎么样", "如何", "办", "办理", "去", "我", "我们", "想", "要", "的", "了", "吗",
    "呢", "啊", "哪里", "哪儿", "在", "需要", "什么", "材料", "手续", "流程", "请问", "可以", "能",
    "带", "个", "一下", "领", "交", "弄", "拿", "是", "有", "和", "给", "申请", "问", "问问", "咨询", "谁", "多久", "到",
    "怎么办", "咋办", "哪", "多少", "什么时候", "时候", "该", "应该", "哪个", "部门", "地址", "在哪", "在哪里", "几点", "时间", "上班",
    "爸爸", "妈妈", "父亲", "母亲", "家里", "孩子", "老婆", "老公", "已经", "还", "就", "也", "吧",
    "how", "do", "does", "i", "my", "me", "we", "our", "the", "a", "an", "to", "get", "where",
    "what", "can", "could", "need", "needs", "apply", "for", "of", "in", "is", "are", "want",
    "please", "bring", "documents", "process", "should", "which", "who", "when", "it", "with",
    "and", "or", "on", "at", "there", "any", "about", "ask", "would", "like", "hello", "hi",
    "help", "you", "your", "will", "be", "this", "that", "much", "long", "take", "make",
    "office", "bureau", "desk", "centre", "center", "hours", "open", "opening", "time", "times",
    "mum", "mom", "dad", "father", "mother", "parents", "wife", "husband", "years", "aged",
    "some", "am", "was", "has", "have", "he", "she", "they", "his", "her", "their",
    # chatter: nothing to look up, nothing to ask staff
    "谢谢", "谢谢您", "好的", "好", "嗯", "嗯嗯", "收到", "你好", "您好", "再见", "没事",
    "ok", "okay", "thanks", "thank", "bye",
}

# Words that contain a guide word but mean something else; taught to jieba so that "公租房"
# (public rental housing) is not cut into "公" + "租房" (renting, a residence registration word).
OTHER_WORDS = ("公租房", "廉租房", "租房补贴")


class GuideError(ValueError):
    pass


@dataclass(frozen=True)
class Guide:
    id: str
    number: int  # stable short id for buttons: never reuse one for another guide
    topic: str
    # language -> {title, office, hours, bring, steps, keywords, synonyms, questions}
    texts: dict[str, dict]

    def field(self, lang: str, name: str) -> str:
        return (self.texts.get(lang) or self.texts["zh-Hans"])[name]


@dataclass(frozen=True)
class Match:
    guide: Guide
    score: float


def load_guides(root: Path = CONTENT / "guides") -> list[Guide]:
    """Every guide, checked: known topic, unique id, every field in both languages."""
    guides: list[Guide] = []
    seen: set[str] = set()
    numbers: set[int] = set()
    for path in sorted(root.glob("*.toml")):
        with path.open("rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise GuideError(f"{path.name}: {exc}") from None
        gid, topic = data.get("id"), data.get("topic")
        if not gid or gid in seen:
            raise GuideError(f"{path.name}: missing or repeated id {gid!r}")
        number = data.get("number")
        if not isinstance(number, int) or number <= 0 or number in numbers:
            raise GuideError(f"{path.name}: missing or repeated number {number!r}")
        if topic not in TOPICS:
            raise GuideError(f"{path.name}: topic {topic!r} is not one of {TOPICS}")
        texts = {}
        for lang in LANGUAGES:
            block = data.get(lang)
            if not isinstance(block, dict):
                raise GuideError(f"{path.name}: no [{lang}] section")
            for name in FIELDS:
                value = block.get(name)
                if name in LISTS:
                    if not (isinstance(value, list) and value
                            and all(isinstance(v, str) and v.strip() for v in value)):
                        raise GuideError(f"{path.name}: [{lang}] {name} must be a list of text")
                elif not (isinstance(value, str) and value.strip()):
                    raise GuideError(f"{path.name}: [{lang}] {name} is missing")
            texts[lang] = block
        seen.add(gid)
        numbers.add(number)
        guides.append(Guide(gid, number, topic, texts))
    return sorted(guides, key=lambda g: g.number)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


class GuideIndex:
    def __init__(self, guides: list[Guide]) -> None:
        self.guides = guides
        self.by_id = {g.id: g for g in guides}
        self.by_number = {g.number: g for g in guides}
        self._keywords = {g.id: [_fold(k) for lang in LANGUAGES
                                 for k in [g.field(lang, "title"), *g.field(lang, "keywords"),
                                           *g.field(lang, "synonyms")]]
                          for g in guides}
        self._questions = {g.id: [_fold(q) for lang in LANGUAGES
                                  for q in g.field(lang, "questions")] for g in guides}

    def warm(self) -> GuideIndex:
        """Load jieba's dictionary and the guides' vocabulary now (a second or so, best spent
        in a worker thread at start) rather than on the first resident's question."""
        _ = self._terms, self._question_terms, self._sounds
        return self

    @property
    def warmed(self) -> bool:
        return "_sounds" in self.__dict__

    @cached_property
    def _jieba(self) -> ModuleType:
        import jieba

        # jieba logs its dictionary loading to stderr, in the middle of the terminal chat;
        # only ever raise its level (bot.report_catalog silences it too).
        jieba.setLogLevel(max(logging.WARNING, jieba.default_logger.level))
        tokenizer = jieba.Tokenizer()  # our own, so other features' words never mix with ours
        tokenizer.initialize()
        for word in OTHER_WORDS:
            tokenizer.add_word(word, freq=100_000)
        for words in self._keywords.values():
            for word in words:
                if _CJK.search(word) and " " not in word:
                    tokenizer.add_word(word, freq=50_000)
        return tokenizer

    @cached_property
    def _terms(self) -> dict[str, set[str]]:
        # Keywords also count by their parts ("补贴" in "80岁补贴"), as the search engine cut.
        return {gid: {t for k in words for t in self.tokens(k, parts=True)} | set(words)
                for gid, words in self._keywords.items()}

    @cached_property
    def _question_terms(self) -> dict[str, set[str]]:
        # The words of sample questions help explain a question but never pick a guide on
        # their own: "换证" is in "残疾人证到期换证" and in every other renewal too.
        return {gid: {t for q in questions for t in self.tokens(q)
                      if len(t) > 1 or not _CJK.match(t)} - self._terms[gid]
                for gid, questions in self._questions.items()}

    @cached_property
    def _sounds(self) -> dict[int, dict[tuple[str, ...], str]]:
        """Chinese guide words by their pinyin, by length: the spellings a typo may mean."""
        from pypinyin import lazy_pinyin

        out: dict[int, dict[tuple[str, ...], str]] = {}
        for word in sorted(set().union(*self._terms.values())):  # typos of guide words only
            if len(word) >= 2 and all(_CJK.match(c) for c in word):
                out.setdefault(len(word), {}).setdefault(tuple(lazy_pinyin(word)), word)
        return out

    def _respell(self, chunk: str) -> str:
        """Replace what sounds like a guide word and shares half its characters with it
        ("居主证" → "居住证"); exact words are left alone, so nothing correct is changed."""
        from pypinyin import lazy_pinyin

        sounds = lazy_pinyin(chunk)
        if len(sounds) != len(chunk):
            return chunk
        # Characters already inside a correctly written guide word are never respelled
        # ("生二胎" must not become "生儿胎" because "生儿" is in "新生儿").
        fixed = [False] * len(chunk)
        for words in self._sounds.values():
            for word in words.values():
                start = chunk.find(word)
                while start >= 0:
                    fixed[start:start + len(word)] = [True] * len(word)
                    start = chunk.find(word, start + 1)
        for size in sorted(self._sounds, reverse=True):
            i = 0
            while i + size <= len(chunk):
                word = self._sounds[size].get(tuple(sounds[i:i + size])) or ""
                piece = chunk[i:i + size]
                if (word and word != piece and not any(fixed[i:i + size])
                        and 2 * sum(a == b for a, b in zip(word, piece, strict=True)) >= size):
                    chunk = chunk[:i] + word + chunk[i + size:]
                    fixed[i:i + size] = [True] * size
                    i += size
                else:
                    i += 1
        return chunk

    def tokens(self, text: str, *, parts: bool = False) -> list[str]:
        text = _fold(text)
        out: list[str] = []
        for chunk in re.split(r"[^\w]+", text):
            if not chunk:
                continue
            if _CJK.search(chunk):
                # No HMM guessing of unknown words: it glues "我想领" into one "word" that
                # then matches nothing; single characters are weighed lightly instead.
                if not parts:
                    chunk = self._respell(chunk)
                cut = self._jieba.lcut_for_search if parts else self._jieba.lcut
                out.extend(w for w in cut(chunk, HMM=False) if w.strip())
            else:
                out.extend(_WORD.findall(chunk))
        return [w for w in out if w not in STOPWORDS]

    def search(self, question: str, *, cutoff: float = 60.0, limit: int = 3) -> list[Match]:
        """The guides that explain the question, best first; empty when none does well."""
        words = self.tokens(question)
        if not words:
            return []
        # strong[g][i]: how well guide g's own words match question word i; best[g][i]: the
        # same, its sample questions' words included
        strong = {g.id: [max(_word_score(w, t) for t in self._terms[g.id]) for w in words]
                  for g in self.guides}
        best = {g.id: [max([s, *(_word_score(w, t) for t in self._question_terms[g.id])])
                       for w, s in zip(words, strong[g.id], strict=True)]
                for g in self.guides}
        weights = [((0.5 if len(w) == 1 else min(len(w), 4)) if _CJK.search(w)
                    else min(len(w), 8) / 2)
                   * (1.0 if any(best[g][i] >= 80 for g in best)
                      else UNKNOWN_WEIGHT if _CJK.search(w) else UNKNOWN_WEIGHT_LATIN)
                   for i, w in enumerate(words)]
        total = sum(weights)
        matches = []
        for guide in self.guides:
            explained, sure = 0.0, False
            for word, weight, score, own in zip(words, weights, best[guide.id],
                                                strong[guide.id], strict=True):
                if score >= 80:
                    explained += weight * score / 100
                    sure = sure or (own >= 95 and len(word) >= 2 if _CJK.search(word)
                                    else own >= 88 and len(word) >= 4)
            score = 100 * explained / total
            if sure and score >= cutoff:
                matches.append(Match(guide, round(score, 1)))
        matches.sort(key=lambda m: -m.score)
        if matches:
            # Only guides nearly as good as the best: "residence" may fit two, not all.
            top = matches[0].score
            matches = [m for m in matches if m.score >= top - 20]
        return matches[:limit]


def _word_score(word: str, term: str) -> float:
    if word == term:
        return 100.0
    if _CJK.search(word):
        # One character more or less around the same word ("居住证" / "居住证办") is close, but
        # not close enough on its own to pick a guide ("居住" is in two guides).
        if len(word) >= 2 and len(term) >= 2 and abs(len(word) - len(term)) == 1 and (
                word in term or term in word):
            return 85.0
        return fuzz.ratio(word, term)
    if " " in term:
        return 0.0  # English phrases are matched word by word through their tokens
    return fuzz.ratio(word, term)
