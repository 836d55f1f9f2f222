"""READMEs in Chinese (and other CJK languages): script detection, dense chunking, keyword
patterns without word boundaries, the shipped Chinese glosses, and what the tagger does with them."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedtag.encoders import HashingEncoder
from embedtag.glosses import (
    TagGlosses,
    default_glosses_path,
    language_glosses_paths,
    load_glosses,
    merge_glosses,
    parse_glosses,
    tag_cues,
    tag_keywords,
    tag_texts,
)
from embedtag.index import TagIndex, build_index
from embedtag.language import (
    JAPANESE_KANA,
    MOSTLY_CJK,
    SAMPLE_CHARS,
    ScriptCounts,
    cjk_share,
    has_cjk,
    language_note,
    mostly_chinese,
    mostly_cjk,
    prose,
    readme_counts,
    script_counts,
)
from embedtag.scoring import cue_hits, cue_patterns, keyword_hits, keyword_pattern
from embedtag.tagger import Document, Evidence, Tagger
from embedtag.tags import Tag, load_tags, parse_tags
from embedtag.text import (
    CJK_CHAR_WIDTH,
    CJK_CHARS,
    HAN,
    HANGUL,
    KANA,
    MIN_PROSE_WORDS,
    Section,
    approx_token_count,
    chunk_text,
    document_chunks,
    opening_text,
    readme_sections,
    sections_text,
    word_count,
)

ZH_GLOSSES_PATH = default_glosses_path().parent / "glosses.zh.json"
CJK = re.compile(f"[{CJK_CHARS}]")

# ---- realistic READMEs ----------------------------------------------------------------------

# An English README with a language switcher: the only CJK is the "简体中文" link text.
ENGLISH_WITH_SWITCHER = """\
# FastQueue

[English](README.md) | [简体中文](README.zh-CN.md)

[![PyPI](https://img.shields.io/pypi/v/fastqueue.svg)](https://pypi.org/project/fastqueue/)

FastQueue is a lightweight job queue for Python services. It stores jobs in Redis and runs
workers with retries, rate limits and scheduled tasks.

## Install

```bash
pip install fastqueue
```

## Usage

Define a task with a decorator, then start a worker process from the command line.
"""

# Sa-Token-like: Chinese prose, an English Java code block far longer than the prose, badges, URLs.
JAVA_BLOCK = """\
```java
@SpringBootApplication
public class SaTokenDemoApplication {
    public static void main(String[] args) throws Exception {
        SpringApplication.run(SaTokenDemoApplication.class, args);
        System.out.println("Startup finished, the token configuration is loaded from the application file");
    }

    @RequestMapping("doLogin")
    public String doLogin(String username, String password) {
        if ("zhang".equals(username) && "123456".equals(password)) {
            StpUtil.login(10001);
            return "login success, the session token is now stored in the cookie of the browser";
        }
        return "login failed, please check the username and the password and try again later";
    }
}
```
"""

CHINESE_WITH_CODE = f"""\
# Sa-Token

[![Maven Central](https://img.shields.io/maven-central/v/cn.dev33/sa-token-core.svg)](https://search.maven.org)
[![License](https://img.shields.io/badge/license-Apache%202-blue.svg)](https://www.apache.org/licenses/LICENSE-2.0)

一个轻量级 Java 权限认证框架，主要解决：登录认证、权限认证、单点登录、分布式会话、微服务网关鉴权等一系列权限相关问题。

框架针对踢人下线、自动续签、前后台分离、分布式会话等常见业务场景进行了封装，开箱即用。

## 快速开始

{JAVA_BLOCK}
访问 https://sa-token.cc/doc.html#/start/example 查看完整的示例与文档。
"""

# Japanese: kanji mixed with hiragana and katakana.
JAPANESE = """\
# キャッシュ

これはウェブアプリケーションのための小さなキャッシュライブラリです。設定ファイルを読み込んで、結果をメモリに保存します。

## 使い方

コマンドラインからサーバーを起動して、ブラウザで管理画面を開いてください。
"""

KOREAN = """\
# 캐시

이것은 웹 애플리케이션을 위한 작은 캐시 라이브러리입니다. 설정 파일을 읽고 결과를 메모리에 저장합니다.
"""


# ==== embedtag.language ======================================================================


def test_script_counts_counts_each_script_and_latin_words() -> None:
    counts = script_counts("基于 Kubernetes 的 v2 调度器 x，ひらがなカタカナ 한국어")
    # Han: 基 于 的 调 度 器; kana: ひらがな + カタカナ; hangul: 한국어
    assert counts == ScriptCounts(han=6, kana=8, hangul=3, words=1)  # "v2" and "x" are not English words
    assert counts.cjk == 17
    assert counts.share == pytest.approx(17 / 18)


def test_script_counts_of_empty_text_has_share_zero() -> None:
    counts = script_counts("")
    assert counts == ScriptCounts(0, 0, 0, 0)
    assert counts.share == 0.0
    assert counts.chinese is False
    assert cjk_share("") == 0.0


def test_english_readme_with_a_language_switcher_is_not_mostly_cjk() -> None:
    counts = readme_counts("A job queue for Python", ENGLISH_WITH_SWITCHER)
    assert counts.han == 4  # 简体中文, nothing else
    assert counts.words > 20
    share = cjk_share(ENGLISH_WITH_SWITCHER)
    assert 0 < share < 0.2 < MOSTLY_CJK
    assert not mostly_cjk(share)
    assert not mostly_chinese("", ENGLISH_WITH_SWITCHER)
    assert language_note(share, False) is None


def test_chinese_readme_with_a_big_english_code_block_is_mostly_chinese() -> None:
    # counted raw, the code, badges and URLs would outvote the prose ...
    assert script_counts(CHINESE_WITH_CODE).share < MOSTLY_CJK
    # ... but only the cleaned prose is counted
    text = prose("", CHINESE_WITH_CODE)
    for gone in ("SpringApplication", "StpUtil", "shields", "maven", "https", "cookie"):
        assert gone not in text
    assert "权限认证框架" in text
    share = cjk_share(CHINESE_WITH_CODE)
    assert share >= 0.9
    assert mostly_cjk(share)
    assert mostly_chinese("", CHINESE_WITH_CODE)
    assert readme_counts("", CHINESE_WITH_CODE).chinese


def test_japanese_with_kana_is_cjk_but_not_chinese() -> None:
    counts = readme_counts("", JAPANESE)
    assert counts.kana > JAPANESE_KANA * (counts.han + counts.kana)
    assert counts.han > 0
    assert mostly_cjk(cjk_share(JAPANESE))
    assert counts.chinese is False
    assert not mostly_chinese("", JAPANESE)


def test_korean_is_cjk_but_not_chinese() -> None:
    counts = readme_counts("", KOREAN)
    assert counts.hangul > 0 and counts.han == 0
    assert mostly_cjk(counts.share)
    assert not mostly_chinese("", KOREAN)


def test_mostly_cjk_threshold_is_inclusive() -> None:
    assert mostly_cjk(MOSTLY_CJK)
    assert not mostly_cjk(MOSTLY_CJK - 1e-9)
    assert ScriptCounts(han=6, kana=0, hangul=0, words=4).chinese  # share 0.6 exactly
    assert not ScriptCounts(han=59, kana=0, hangul=0, words=41).chinese  # share 0.59


def test_japanese_kana_threshold() -> None:
    # 20 kana among 100 Han + kana characters: still Chinese (a few loanwords); 21: Japanese
    assert ScriptCounts(han=80, kana=20, hangul=0, words=0).chinese
    assert not ScriptCounts(han=79, kana=21, hangul=0, words=0).chinese


def test_hangul_must_stay_below_han_for_chinese() -> None:
    assert ScriptCounts(han=6, kana=0, hangul=5, words=0).chinese
    assert not ScriptCounts(han=5, kana=0, hangul=5, words=0).chinese


def test_description_counts_with_the_readme() -> None:
    readme = "# sa-token\n\nSee docs.\n"
    assert cjk_share(readme) < MOSTLY_CJK
    description = "一个轻量级 Java 权限认证框架，让鉴权变得简单、优雅"
    assert cjk_share(readme, description) >= MOSTLY_CJK
    assert mostly_chinese(description, readme)
    # readme_counts takes (description, readme), cjk_share (readme, description)
    assert readme_counts(description, readme).share == cjk_share(readme, description)


def test_prose_passes_given_sections_through() -> None:
    sections = [Section("标题", "中文内容在这里")]
    assert prose("描述", "ignored English readme text here", sections) == "描述\n标题\n中文内容在这里"
    assert readme_counts("描述", "ignored English readme text here", sections).words == 0


def test_only_the_first_sample_chars_of_prose_are_counted() -> None:
    english = "This sentence is plain English prose about a queue. " * (SAMPLE_CHARS // 50 + 10)
    readme = f"{english}\n\n## 中文说明\n\n" + "这是一个中文项目的说明文字。" * 2000
    assert cjk_share(readme) == 0.0  # the Chinese starts past the sample
    assert len(prose("", readme)) <= SAMPLE_CHARS + 1


def test_has_cjk() -> None:
    assert has_cjk("uses 鉴权")
    assert has_cjk("カタカナ")
    assert has_cjk("한국어")
    assert not has_cjk("plain English, café, naïve — 。")  # CJK punctuation alone is not a CJK character


def test_language_note() -> None:
    assert language_note(0.59, True) is None
    chinese = language_note(0.913, True)
    assert chinese is not None
    assert chinese.startswith("README mostly Chinese (CJK 0.91)")
    assert "keywords" in chinese
    other = language_note(0.9, False)
    assert other is not None
    assert other.startswith("README mostly CJK (Japanese or Korean) (CJK 0.90)")
    assert "Chinese (" not in other


# ==== embedtag.text ==========================================================================


@pytest.mark.parametrize(
    ("char", "script"),
    [
        ("中", HAN),
        ("\u3400", HAN),  # CJK extension A
        ("\uf900", HAN),  # compatibility ideographs
        ("あ", KANA),
        ("ア", KANA),
        ("\u31f0", KANA),  # katakana phonetic extensions
        ("한", HANGUL),
        ("\u3131", HANGUL),  # compatibility jamo
        ("\u1100", HANGUL),  # jamo
    ],
)
def test_cjk_ranges(char: str, script: str) -> None:
    assert re.fullmatch(f"[{script}]", char)
    assert re.fullmatch(f"[{CJK_CHARS}]", char)
    others = [s for s in (HAN, KANA, HANGUL) if s != script]
    assert not any(re.fullmatch(f"[{s}]", char) for s in others)


@pytest.mark.parametrize("char", ["A", "é", "。", "，", "1", "\u00b7"])
def test_cjk_ranges_leave_out_latin_and_punctuation(char: str) -> None:
    assert not re.fullmatch(f"[{CJK_CHARS}]", char)


def test_opening_text_not_dense_is_sections_text() -> None:
    sections = [Section("标题", "一二三四五六七八九十" * 50), Section("Usage", "run it " * 100)]
    for width in (10, 30, 600):
        assert opening_text(sections, width) == sections_text(sections, width)


def test_opening_text_dense_counts_a_cjk_character_as_cjk_char_width() -> None:
    sections = [Section("", "一二三四五六七八九十" * 100)]
    opening = opening_text(sections, 600, dense=True)
    assert len(opening) == 600 // CJK_CHAR_WIDTH
    assert len(opening_text(sections, 600)) == 600
    # mixed: a, b count 1 each, 中 and 文 CJK_CHAR_WIDTH each
    mixed = [Section("", "ab中文cd")]
    assert CJK_CHAR_WIDTH == 3
    assert opening_text(mixed, 5, dense=True) == "ab中"
    assert opening_text(mixed, 7, dense=True) == "ab中"
    assert opening_text(mixed, 8, dense=True) == "ab中文"
    assert opening_text(mixed, 100, dense=True) == "ab中文cd"


def test_opening_text_dense_on_latin_text_is_unchanged() -> None:
    sections = [Section("Intro", "A fast job queue for Python. " * 40), Section("Usage", "pip install it")]
    for width in (1, 25, 600):
        assert opening_text(sections, width, dense=True) == sections_text(sections, width)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hello world", 2),
        ("café au lait", 3),  # non-ASCII, no CJK: whitespace words
        ("一二三", 1),  # two CJK characters to a word
        ("一二三四", 2),
        ("基于Kubernetes的调度器", 4),  # 6 CJK characters + Kubernetes
        ("使用 pip install 安装", 4),  # 4 CJK characters + pip + install
        ("", 0),
    ],
)
def test_word_count(text: str, words: int) -> None:
    assert word_count(text) == words


def test_approx_token_count_makes_each_cjk_character_a_token() -> None:
    assert approx_token_count("中文") == 2
    assert approx_token_count("一个轻量级框架") == 7
    # 基 于 的: 3 tokens; Kubernetes: 1 + 10 // 6
    assert approx_token_count("基于Kubernetes的") == 5
    assert approx_token_count("hello world") == 2  # English unchanged


def test_chunk_text_dense_splits_on_chinese_sentence_ends() -> None:
    text = "第一句话。第二句话！第三句话？第四句话；"
    assert chunk_text(text, max_tokens=6, dense=True) == ["第一句话。", "第二句话！", "第三句话？", "第四句话；"]
    # not dense: one "sentence", cut wherever the token budget runs out
    plain = chunk_text(text, max_tokens=6)
    assert plain != chunk_text(text, max_tokens=6, dense=True)
    assert chunk_text(text) == [text]
    # dense, with room: the sentences are packed back into one chunk
    assert chunk_text(text, dense=True) == ["第一句话。 第二句话！ 第三句话？ 第四句话；"]


@pytest.mark.parametrize("mark", ["。", "！", "？", "；"])
def test_chunk_text_dense_each_sentence_mark_ends_a_sentence(mark: str) -> None:
    text = f"前面的一句话{mark}后面的一句话。"
    # split after the mark, then packed back together: the space shows the split
    assert chunk_text(text, dense=True) == [f"前面的一句话{mark} 后面的一句话。"]
    assert chunk_text(text) == [text]


@pytest.mark.parametrize("mark", ["，", "、", "：", ","])
def test_chunk_text_dense_clause_marks_do_not_end_a_sentence(mark: str) -> None:
    text = f"前面的一个从句{mark}后面的一个从句。"
    assert chunk_text(text, dense=True) == [text]


def test_chunk_text_dense_latin_sentence_ends_still_need_a_space() -> None:
    english = (
        "Version v1.2 adds caching, e.g. for sessions. It is fast! Is it safe? Yes.\n"
        "Install it with pip. The docs live at docs.example.com and cover every option in detail."
    )
    for max_tokens in (4, 8, 16, 128):
        assert chunk_text(english, max_tokens, dense=True) == chunk_text(english, max_tokens)
    assert "v1.2" in " ".join(chunk_text(english, 8, dense=True))


def test_chunk_text_dense_cuts_a_long_cjk_run_after_its_clauses() -> None:
    clause = "这是一个很长的从句内容"
    text = "，".join([clause] * 30) + "。"
    dense = chunk_text(text, max_tokens=40, dense=True)
    assert len(dense) > 1
    assert all(approx_token_count(c) <= 40 for c in dense)
    assert all(c.endswith("，") for c in dense[:-1])  # every cut falls after a comma
    assert dense[-1].endswith("。")
    assert re.sub(r"\W", "", "".join(dense)) == clause * 30  # nothing lost
    # not dense: the same run is cut in the middle of clauses
    plain = chunk_text(text, max_tokens=40)
    assert not all(c.endswith("，") for c in plain[:-1])


@pytest.mark.parametrize("separator", ["、", "：", "，"])
def test_chunk_text_dense_clause_separators(separator: str) -> None:
    text = separator.join(["数据同步增量订阅"] * 12)
    dense = chunk_text(text, max_tokens=20, dense=True)
    assert len(dense) > 1
    assert all(c.endswith(separator) for c in dense[:-1])


def test_chunk_text_dense_is_bounded_and_loses_no_words() -> None:
    text = "一个基于Kubernetes的容器编排平台，支持自动扩缩容、滚动升级：以及服务发现。" * 20
    for max_tokens in (1, 3, 7, 16, 64):
        chunks = chunk_text(text, max_tokens=max_tokens, dense=True)
        assert all(c.strip() for c in chunks)
        assert all(approx_token_count(c) <= max_tokens for c in chunks if len(c) > 1)
        assert re.sub(r"\W", "", "".join(chunks)) == re.sub(r"\W", "", text)


def test_document_chunks_dense_keeps_a_short_chinese_sentence_as_prose() -> None:
    readme = "# 项目\n\n一个轻量级的权限认证框架，开箱即用。\n"
    sentence = "一个轻量级的权限认证框架，开箱即用。"
    assert len(sentence.split()) < MIN_PROSE_WORDS <= word_count(sentence)
    dense = document_chunks("", readme, dense=True)
    assert [(c.text, c.weight, c.source) for c in dense] == [(sentence, 2.0, "项目")]
    # not dense: one whitespace "word", so no prose chunk; only the headings fallback
    plain = document_chunks("", readme)
    assert [c.source for c in plain] == ["headings"]
    assert plain[0].weight == 1.0


def test_document_chunks_dense_skips_a_title_too_short_for_a_sentence() -> None:
    readme = "# 工具\n\n简介\n\n## 功能\n\n支持登录认证、权限认证、单点登录。支持分布式会话。\n"
    chunks = document_chunks("", readme, dense=True, max_tokens=12)
    texts = [c.text for c in chunks]
    assert "简介" not in texts  # one Chinese word: below MIN_PROSE_WORDS
    assert all(word_count(t) >= MIN_PROSE_WORDS for t in texts)
    assert any("单点登录" in t for t in texts)


def test_document_chunks_dense_splits_the_description_on_chinese_sentences() -> None:
    description = "一个轻量级权限认证框架。支持单点登录与分布式会话。"
    dense = document_chunks(description, "", dense=True)
    assert [(c.text, c.source) for c in dense] == [
        ("一个轻量级权限认证框架。 支持单点登录与分布式会话。", "description")
    ]
    plain = document_chunks(description, "")
    assert [(c.text, c.source) for c in plain] == [(description, "description")]
    short = document_chunks(
        "轻量级权限认证框架。支持单点登录、分布式会话与微服务网关鉴权。", "", dense=True, max_tokens=26
    )
    assert [c.text for c in short] == ["轻量级权限认证框架。", "支持单点登录、分布式会话与微服务网关鉴权。"]


# ==== embedtag.scoring: keyword and cue patterns ==============================================


def test_dense_pattern_matches_a_cjk_term_inside_a_chinese_run() -> None:
    pattern = keyword_pattern(["authentication", "鉴权", "权限认证"], dense=True)
    assert pattern is not None
    assert pattern.search("微服务网关鉴权等一系列问题")
    assert pattern.search("一个轻量级权限认证框架")
    assert pattern.search("supports Authentication")  # Latin terms still count
    assert not pattern.search("一个轻量级的日志框架")
    assert set(pattern.terms) == {"authentication", "鉴权", "权限认证"}


def test_non_dense_pattern_leaves_cjk_terms_out() -> None:
    assert keyword_pattern(["鉴权", "权限认证"]) is None
    mixed = keyword_pattern(["authentication", "鉴权", "API 接口"])
    english = keyword_pattern(["authentication"])
    assert mixed is not None and english is not None
    assert mixed.regex.pattern == english.regex.pattern
    assert mixed.terms == english.terms == ("authentication",)
    assert not mixed.search("微服务网关鉴权等一系列问题")


@pytest.mark.parametrize(
    ("text", "dense", "plain"),
    [
        ("基于Kubernetes的容器调度平台", True, False),  # CJK neighbours end a word only in dense text
        ("基于 Kubernetes 的容器调度平台", True, True),
        ("运行在KUBERNETES集群中", True, False),  # case-insensitive
        ("（Kubernetes）", True, True),
        ("基于MyKubernetes的平台", False, False),  # inside a longer Latin word: never
        ("基于Kubernetes2的平台", False, False),
        ("基于kubernetes-operator的平台", False, False),  # a hyphen continues the word
        ("基于kubernetes_operator的平台", False, False),
        ("runs on Kubernetes.", True, True),
    ],
)
def test_latin_term_next_to_cjk(text: str, dense: bool, plain: bool) -> None:
    dense_pattern = keyword_pattern(["k8s", "Kubernetes"], dense=True)
    plain_pattern = keyword_pattern(["k8s", "Kubernetes"])
    assert dense_pattern is not None and plain_pattern is not None
    assert dense_pattern.search(text) is dense
    assert plain_pattern.search(text) is plain


def test_dense_pattern_mixed_term_with_a_latin_edge() -> None:
    pattern = keyword_pattern(["客户端 SDK"], dense=True)
    assert pattern is not None
    assert pattern.search("提供官方客户端 SDK，支持多种语言")
    assert pattern.search("提供官方客户端 sdk。")
    assert not pattern.search("提供官方客户端 SDKs 与示例")
    assert not pattern.search("提供官方客户端 SDK2 与示例")


def test_dense_pattern_drops_one_character_terms() -> None:
    assert keyword_pattern(["库"], dense=True) is None
    pattern = keyword_pattern(["库", "类库"], dense=True)
    assert pattern is not None
    assert pattern.terms == ("类库",)
    assert not pattern.search("一个数据库")


def test_keyword_hits_dense_and_not() -> None:
    terms = [["k8s", "Kubernetes", "容器编排"], ["database", "数据库"], ["cli", "命令行工具"]]
    dense = [keyword_pattern(t, dense=True) for t in terms]
    plain = [keyword_pattern(t) for t in terms]
    text = "一个基于Kubernetes的数据库运维平台。"
    assert keyword_hits(text, dense).tolist() == [1.0, 1.0, 0.0]
    assert keyword_hits(text, plain).tolist() == [0.0, 0.0, 0.0]


def test_cue_patterns_keep_cjk_cues_only_when_dense() -> None:
    cues = ["命令行", r"^\s*用法[:：]", r"\bpip install\b"]
    plain = cue_patterns(cues)
    dense = cue_patterns(cues, dense=True)
    assert [c.regex.pattern for c in plain] == [r"\bpip install\b"]
    assert [c.regex.pattern for c in dense] == cues
    text = "一个命令行工具。\n用法：tool --help\n"
    assert cue_hits(text, [dense]).tolist() == pytest.approx([2 / 3])
    assert cue_hits(text, [plain]).tolist() == [0.0]


# ==== embedtag.glosses: merging and the shipped Chinese glosses ===============================


def test_language_glosses_paths_lists_the_chinese_file() -> None:
    paths = language_glosses_paths()
    assert ZH_GLOSSES_PATH in paths
    assert paths == sorted(paths)
    assert default_glosses_path() not in paths
    assert all(p.name.startswith("glosses.") and p.name.endswith(".json") for p in paths)


def test_merge_glosses_adds_after_base_and_keeps_base_expansion_and_form() -> None:
    base = {
        "cli": TagGlosses("command-line tool", ("A terminal tool.",), ("shell",), (r"\busage:",), form=True),
        "db": TagGlosses("database", ("A database.",)),
    }
    extra = {
        "cli": TagGlosses("命令行", ("一个命令行工具。", "A terminal tool."), ("命令行工具", "shell"), ("命令行",)),
        "new": TagGlosses("new tag", ("新标签。",), ("新",)),
    }
    merged = merge_glosses(base, extra)
    assert merged["cli"] == TagGlosses(
        "command-line tool",
        ("A terminal tool.", "一个命令行工具。"),
        ("shell", "命令行工具"),
        (r"\busage:", "命令行"),
        form=True,
    )
    assert merged["db"] is base["db"]  # untouched
    assert merged["new"] is extra["new"]  # only in extra: taken as is
    assert base["cli"].aliases == ("shell",)  # base not changed in place
    assert set(base) == {"cli", "db"}


def test_load_glosses_default_merges_the_chinese_glosses() -> None:
    merged = load_glosses()
    english = load_glosses(default_glosses_path())
    auth = merged["authentication"]
    assert "鉴权" in auth.aliases and "权限认证" in auth.aliases
    assert "鉴权" not in english["authentication"].aliases
    # the English aliases come first, the expansion stays the English one
    assert auth.aliases[: len(english["authentication"].aliases)] == english["authentication"].aliases
    assert auth.expansion == english["authentication"].expansion
    assert any(has_cjk(g) for g in auth.glosses)
    for key, g in english.items():
        assert merged[key].form == g.form
        assert merged[key].expansion == g.expansion
        assert set(g.aliases) <= set(merged[key].aliases)
        assert set(g.cues) <= set(merged[key].cues)


def test_load_glosses_reads_an_explicit_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"authentication": {"aliases": ["login"], "glosses": ["Sign in."]}}), encoding="utf-8")
    assert load_glosses(path) == {"authentication": TagGlosses("authentication", ("Sign in.",), ("login",))}
    # even the shipped English file, named explicitly, comes without the Chinese glosses
    shipped = load_glosses(default_glosses_path())
    assert not any(has_cjk(a) for g in shipped.values() for a in g.aliases)


@pytest.fixture(scope="module")
def shipped_tags() -> list[Tag]:
    return load_tags()


@pytest.fixture(scope="module")
def zh_glosses() -> dict[str, TagGlosses]:
    return parse_glosses(ZH_GLOSSES_PATH.read_text(encoding="utf-8"), str(ZH_GLOSSES_PATH))


def test_shipped_chinese_glosses_cover_every_shipped_tag(
    shipped_tags: list[Tag], zh_glosses: dict[str, TagGlosses]
) -> None:
    raw = json.loads(ZH_GLOSSES_PATH.read_text(encoding="utf-8"))
    assert set(zh_glosses) == {t.key for t in shipped_tags}
    for key, entry in raw.items():
        # merge_glosses ignores expansion and form: a Chinese file must not rely on them
        assert set(entry) <= {"aliases", "glosses", "cues"}, key
        g = zh_glosses[key]
        assert g.aliases, key
        assert g.glosses, key
        assert all(has_cjk(a) and len(a.strip()) >= 2 for a in g.aliases), (key, g.aliases)
        assert all(has_cjk(t) for t in g.glosses), (key, g.glosses)
        # a cue without CJK would fire on English READMEs too
        assert all(has_cjk(c) for c in g.cues), (key, g.cues)
    assert "鉴权" in zh_glosses["authentication"].aliases
    assert "低代码" in zh_glosses["low-code"].aliases


def test_shipped_chinese_glosses_become_tag_texts(shipped_tags: list[Tag]) -> None:
    texts = tag_texts(shipped_tags, load_glosses())
    auth = next(t for t in shipped_tags if t.key == "authentication")
    mine = [t for t in texts if t.tag_id == auth.id]
    assert any(t.kind == "alias" and t.text == "鉴权 (authentication and authorization)" for t in mine)
    assert any(t.kind == "gloss" and has_cjk(t.text) for t in mine)
    english_only = tag_texts(shipped_tags, load_glosses(default_glosses_path()))
    assert not any(has_cjk(t.text) for t in english_only)


def test_every_shipped_chinese_alias_is_caught_in_a_chinese_sentence(
    shipped_tags: list[Tag], zh_glosses: dict[str, TagGlosses]
) -> None:
    # Each tag's dense pattern is an alternation over its terms: whatever a pattern over the
    # Chinese aliases alone finds, the tag's full pattern finds too (checked for a few tags below).
    # Compiling the full dense pattern of all 90 tags takes seconds, so the sweep uses the aliases.
    keywords = tag_keywords(shipped_tags, load_glosses())
    missed = []
    for tag in shipped_tags:
        aliases = list(zh_glosses[tag.key].aliases)
        assert set(aliases) <= set(keywords[tag.id]), tag.key  # the tagger's keywords include them
        pattern = keyword_pattern(aliases, dense=True)
        assert pattern is not None
        for alias in aliases:
            for sentence in (f"这是一个{alias}项目。", f"我们提供{alias}，支持私有化部署。", f"{alias}的实现"):
                if not pattern.search(sentence):
                    missed.append((tag.key, sentence))
    assert not missed


@pytest.mark.parametrize("key", ["authentication", "k8s", "sdk", "ai"])
def test_shipped_chinese_aliases_caught_by_the_full_tag_pattern(
    key: str, shipped_tags: list[Tag], zh_glosses: dict[str, TagGlosses]
) -> None:
    tag = next(t for t in shipped_tags if t.key == key)
    pattern = keyword_pattern(tag_keywords(shipped_tags, load_glosses())[tag.id], dense=True)
    assert pattern is not None
    for alias in zh_glosses[key].aliases:
        assert pattern.search(f"我们提供{alias}，支持私有化部署。"), alias
    assert not pattern.search("一个用于批量重命名文件的小工具。")


def test_no_shipped_chinese_alias_or_cue_changes_the_english_patterns(shipped_tags: list[Tag]) -> None:
    merged, english = load_glosses(), load_glosses(default_glosses_path())
    merged_keywords, english_keywords = tag_keywords(shipped_tags, merged), tag_keywords(shipped_tags, english)
    merged_cues, english_cues = tag_cues(shipped_tags, merged), tag_cues(shipped_tags, english)
    grew = 0
    for tag in shipped_tags:
        grew += len(merged_keywords[tag.id]) > len(english_keywords[tag.id])
        a, b = keyword_pattern(merged_keywords[tag.id]), keyword_pattern(english_keywords[tag.id])
        assert (a is None) == (b is None), tag.key
        if a is not None and b is not None:
            assert (a.regex.pattern, a.terms) == (b.regex.pattern, b.terms), tag.key
        plain = [c.regex.pattern for c in cue_patterns(merged_cues.get(tag.id, []))]
        assert plain == [c.regex.pattern for c in cue_patterns(english_cues.get(tag.id, []))], tag.key
    assert grew == len(shipped_tags)  # every tag did gain Chinese keywords (for dense text)


# ==== embedtag.tagger ========================================================================

ZH_TAGS_JSON = json.dumps(
    [
        {"id": 1, "name": "k8s"},
        {"id": 2, "name": "database"},
        {"id": 3, "name": "cli"},
        {"id": 4, "name": "authentication"},
    ]
)

ZH_GLOSSES_JSON = json.dumps(
    {
        "k8s": {
            "aliases": ["容器编排"],
            "glosses": ["Kubernetes operator for container orchestration.", "基于 Kubernetes 的容器编排平台。"],
        },
        "database": {"aliases": ["数据库"], "glosses": ["A SQL database engine.", "一个关系型数据库。"]},
        "cli": {"glosses": ["A command line tool."], "cues": ["命令行", r"\bpip install\b"], "form": True},
        "authentication": {
            "aliases": ["OAuth", "鉴权", "权限认证"],
            "glosses": ["Login, sessions and permissions.", "用户登录与权限校验。"],
        },
    }
)


@pytest.fixture(scope="module")
def zh_index() -> TagIndex:
    return build_index(parse_tags(ZH_TAGS_JSON, "zh tags"), parse_glosses(ZH_GLOSSES_JSON), HashingEncoder())


@pytest.fixture(scope="module")
def zh_tagger(zh_index: TagIndex) -> Tagger:
    return Tagger(zh_index, HashingEncoder())


def evidence(tagger: Tagger, readme: str, description: str = "") -> Evidence:
    doc = Document("d", readme, description)
    chunks = tagger.chunks(doc)
    assert chunks
    return tagger.score(doc, chunks, tagger.encoder.encode([c.text for c in chunks]))


def column(tagger: Tagger, tag_id: int) -> int:
    return [t.id for t in tagger.index.tags].index(tag_id)


def test_chinese_readme_gets_chinese_keywords(zh_tagger: Tagger) -> None:
    ev = evidence(zh_tagger, CHINESE_WITH_CODE)
    assert ev.chinese is True
    assert ev.cjk == pytest.approx(cjk_share(CHINESE_WITH_CODE))
    assert ev.keyword[column(zh_tagger, 4)] == 1.0  # 权限认证 / 鉴权
    assert ev.keyword[column(zh_tagger, 2)] == 0.0
    assert ev.keyword[column(zh_tagger, 1)] == 0.0


def test_keyword_adds_its_weight_in_a_chinese_readme(zh_index: TagIndex, zh_tagger: Tagger) -> None:
    without = Tagger(replace(zh_index, settings=replace(zh_index.settings, keyword_weight=0.0)), HashingEncoder())
    readme = "# 存储\n\n一个面向云原生场景的分布式数据库，支持水平扩展与强一致事务。\n"
    diff = evidence(zh_tagger, readme).scores - evidence(without, readme).scores
    database = column(zh_tagger, 2)
    assert diff[database] == pytest.approx(zh_index.settings.keyword_weight)
    assert np.count_nonzero(np.delete(diff, database)) == 0


def test_english_readme_quoting_a_chinese_alias_is_unchanged(zh_tagger: Tagger) -> None:
    readme = (
        "# Gatekeeper\n\n[English](README.md) | [简体中文](README.zh-CN.md)\n\n"
        "Gatekeeper checks who may call your services. The Chinese docs call this feature 鉴权, "
        "and it works with sessions, roles and tokens.\n\nIt ships a 命令行 helper too.\n"
    )
    ev = evidence(zh_tagger, readme)
    assert ev.cjk < MOSTLY_CJK and ev.chinese is False
    assert ev.keyword[column(zh_tagger, 4)] == 0.0  # 鉴权 only counts in mostly-CJK READMEs
    assert ev.cue[column(zh_tagger, 3)] == 0.0  # so does the 命令行 cue


def test_chinese_cue_counts_in_a_chinese_readme(zh_tagger: Tagger) -> None:
    readme = (
        "# 工具\n\n一个用于批量重命名文件的命令行小工具，支持正则表达式与撤销操作。\n\n"
        "```bash\npip install renamer\n```\n"
    )
    ev = evidence(zh_tagger, readme)
    assert ev.chinese
    assert ev.cue[column(zh_tagger, 3)] == pytest.approx(2 / 3)  # 命令行 and pip install


def test_latin_keyword_next_to_chinese_counts_only_in_a_chinese_readme(fake_tagger: Tagger) -> None:
    chinese = "# 调度\n\n一个基于Kubernetes的批处理任务调度平台，支持定时任务与失败重试。\n"
    english = (
        "# Scheduler\n\nA batch job scheduler with cron triggers, retries and a small web dashboard "
        "for operators. Its Chinese name is 基于Kubernetes的调度器.\n"
    )
    k8s = column(fake_tagger, 11)
    assert evidence(fake_tagger, chinese).keyword[k8s] == 1.0
    assert evidence(fake_tagger, english).keyword[k8s] == 0.0  # English READMEs keep their old patterns


def test_chinese_keyword_opening_is_cjk_char_width_narrower(zh_tagger: Tagger) -> None:
    width = zh_tagger.settings.keyword_chars
    filler = "这是一段用于占位的普通中文说明文字。"  # no alias of any tag
    early = filler * ((width // CJK_CHAR_WIDTH - 40) // len(filler))
    late = filler * ((width // CJK_CHAR_WIDTH + 40) // len(filler))
    auth = column(zh_tagger, 4)
    # ~160 Chinese characters in: inside the opening
    assert evidence(zh_tagger, f"{early}支持鉴权。{filler}").keyword[auth] == 1.0
    # ~240 Chinese characters in (720 wide): past the opening, though within its 600 characters
    assert len(late) < width
    assert evidence(zh_tagger, f"{late}支持鉴权。{filler}").keyword[auth] == 0.0
    # the description always counts
    assert evidence(zh_tagger, f"{late}支持鉴权。", description="轻量级鉴权框架").keyword[auth] == 1.0


def test_chinese_readme_is_chunked_as_dense_text(fake_tagger: Tagger) -> None:
    readme = "# 项目\n\n一个轻量级的权限认证框架。支持单点登录与分布式会话。\n"
    chunks = fake_tagger.chunks(Document("d", readme))
    # split at 。 (the pieces are packed back together with a space) and kept as prose
    assert [(c.text, c.source) for c in chunks] == [("一个轻量级的权限认证框架。 支持单点登录与分布式会话。", "项目")]
    assert chunks[0].weight == fake_tagger.settings.intro_weight
    # chunked as English, the same README has no sentence of five words: only the headings fallback
    plain = document_chunks("", readme, count_tokens=fake_tagger.encoder.count_tokens)
    assert [c.source for c in plain] == ["headings"]


def test_explain_says_the_language(fake_tagger: Tagger) -> None:
    english = fake_tagger.tag(ENGLISH_WITH_SWITCHER, explain=True).to_json(explain=True)
    assert english["language"] == {"cjk": round(cjk_share(ENGLISH_WITH_SWITCHER), 3), "mostly_chinese": False}
    assert 0 < english["language"]["cjk"] < MOSTLY_CJK

    chinese = fake_tagger.tag(CHINESE_WITH_CODE, explain=True).to_json(explain=True)["language"]
    assert chinese["mostly_chinese"] is True
    assert chinese["cjk"] == round(cjk_share(CHINESE_WITH_CODE), 3)
    assert chinese["note"] == language_note(cjk_share(CHINESE_WITH_CODE), True)
    assert chinese["note"].startswith("README mostly Chinese")

    japanese = fake_tagger.tag(JAPANESE, explain=True).to_json(explain=True)["language"]
    assert japanese["mostly_chinese"] is False
    assert japanese["cjk"] >= MOSTLY_CJK
    assert "Japanese or Korean" in japanese["note"]


def test_language_only_with_explain(fake_tagger: Tagger) -> None:
    result = fake_tagger.tag(CHINESE_WITH_CODE)
    assert result.language is None
    assert "language" not in result.to_json()
    assert "language" not in fake_tagger.tag(CHINESE_WITH_CODE, explain=True).to_json(explain=False)


def test_tag_many_language_matches_tag(fake_tagger: Tagger) -> None:
    docs = [Document("en", ENGLISH_WITH_SWITCHER), Document("zh", CHINESE_WITH_CODE), Document("ja", JAPANESE)]
    batched = [r.language for r in fake_tagger.tag_many(docs, batch_size=3, explain=True)]
    single = [fake_tagger.tag(d.readme, d.description, d.id, explain=True).language for d in docs]
    assert batched == single
    assert [lang["mostly_chinese"] for lang in batched if lang] == [False, True, False]


def test_sections_reused_give_the_same_dense_decision(fake_tagger: Tagger) -> None:
    doc = Document("zh", CHINESE_WITH_CODE)
    sections = readme_sections(doc.readme)
    assert fake_tagger.chunks(doc, sections) == fake_tagger.chunks(doc)
    assert mostly_chinese("", doc.readme, sections)


def test_dense_pattern_lets_chinese_text_leave_out_the_space_between_latin_and_cjk() -> None:
    from embedtag.scoring import keyword_pattern

    pattern = keyword_pattern(["HTTP 客户端", "Node 版本管理"], dense=True)
    assert pattern is not None
    for text in ("一个轻量级HTTP客户端", "一个轻量级 HTTP 客户端", "好用的Node版本管理工具"):
        assert pattern.search(text), text
    assert not pattern.search("MyHTTP客户端")  # still a whole word on its Latin edge
