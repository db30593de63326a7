"""The runnable blocks of the project's Markdown, and a reader's terminal session that runs them.

A fenced block is runnable when the line right before its fence is an HTML comment (invisible on
GitHub): ``<!-- run -->`` runs it and waits for it to end; ``<!-- run: background -->`` starts it
(a server the next blocks talk to, as a reader starts ``make serve`` in a second terminal) and
stops it when the document is done. Blocks without the comment (output samples, fragments of
files, commands for a real cluster) are not run.

A block's leading comment lines may hold directives, which are ordinary comments to a reader:
``# expect: <text>`` (``// expect:`` in Go) the text must appear in its output (a background block
is ready once every expected text appeared); ``# exit: <n>`` the exit status (default 0);
``# stream:`` the block keeps a server stream open: once every expected text appeared it is
interrupted (SIGINT, as Ctrl-C) and must still have been running; ``# recipe: <name>`` names it.

How each language runs, in the document's working folder and with the session's exported
variables: ``bash`` in ``bash -c`` with ``set -euo pipefail`` (exports carry over to later blocks);
``python`` written to a file and run with ``python <file>``; ``go`` written to ``main.go`` of a
fresh module that requires the client module through a ``replace`` directive, then ``go mod tidy``
and ``go run .`` (as docs/go-client.md tells a reader).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MARKED = re.compile(r"^<!-- run(?P<mode>: background)? -->\n```(?P<lang>\w+)\n(?P<body>.*?)^```", re.M | re.S)
COMMENT = {"bash": "# ", "python": "# ", "go": "// "}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    text: str
    background: bool = False
    name: str = ""
    expects: list[str] = field(default_factory=list)
    exit_code: int = 0
    stream: bool = False

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}" + (f" ({self.name})" if self.name else "")


RECIPE = re.compile(r"^```(?P<lang>bash)\n(?P<body># recipe: .*?)^```", re.M | re.S)


def parse(doc: str, markdown: str) -> list[Block]:
    """The marked blocks of a document, in order."""
    return _blocks(doc, markdown, MARKED)


def parse_recipes(doc: str, markdown: str) -> list[Block]:
    """Every ``# recipe:`` bash block, marked or not (pages whose tests start their own server)."""
    return _blocks(doc, markdown, RECIPE)


def _blocks(doc: str, markdown: str, pattern: re.Pattern[str]) -> list[Block]:
    blocks: list[Block] = []
    for found in pattern.finditer(markdown):
        language, body = found["lang"], found["body"]
        background = bool(found.groupdict().get("mode"))
        if language not in COMMENT:
            raise ValueError(f"{doc}: a runnable {language} block: only {sorted(COMMENT)} run")
        line = markdown.count("\n", 0, found.start("body")) + 1  # the block's first line
        name, expects, exit_code, stream = "", [], 0, False
        for text in body.splitlines():
            if not text.startswith(COMMENT[language]):
                break
            key, colon, value = text[len(COMMENT[language]) :].partition(":")
            if not colon:
                continue
            if key == "recipe":
                name = value.strip()
            elif key == "expect":
                expects.append(value.strip())
            elif key == "exit":
                exit_code = int(value)
            elif key == "stream":
                stream = True
        blocks.append(Block(doc, line, language, body, background, name, expects, exit_code, stream))
    return blocks


@dataclass
class Session:
    """One reader's terminal in a folder: exported state, background servers, and port rewriting.

    ``ports`` maps a port the docs name (50051) to the free one this run uses, so the session can
    run beside a developer's own ``make serve``; it is the only rewrite of a block's text.
    """

    workdir: Path
    env: dict[str, str]
    ports: dict[int, int]
    go_module: Path | None = None
    timeout_s: float = 180.0
    state: Path = field(init=False)
    _background: list[tuple[Block, subprocess.Popen[str], Path]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = self.workdir / ".doc-session-state.sh"
        self.state.write_text("")

    def rewrite(self, text: str) -> str:
        for documented, used in self.ports.items():
            text = re.sub(rf"(?<![\d.]){documented}(?!\d)", str(used), text)
        return text

    def _script(self, block: Block) -> str:
        body = self.rewrite(block.text)
        if block.language == "python":
            path = self._snippet_file(block, "py", body)
            body = f"python {shlex.quote(str(path))}"
        elif block.language == "go":
            folder = self._go_module(block, body)
            body = f"cd {shlex.quote(str(folder))} && go mod tidy && go run ."
        return f"set -euo pipefail\nsource {self.state}\n{body}\nexport -p > {self.state}\n"

    def _snippet_file(self, block: Block, suffix: str, body: str) -> Path:
        folder = self.workdir / ".doc-snippets"
        folder.mkdir(exist_ok=True)
        path = folder / f"{Path(block.doc).stem}_{block.line}.{suffix}"
        path.write_text(body)
        return path

    def _go_module(self, block: Block, body: str) -> Path:
        assert self.go_module is not None, "a Go block needs the client module's folder"
        folder = self.workdir / ".doc-snippets" / f"go_{Path(block.doc).stem}_{block.line}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "main.go").write_text(body)
        client = (self.go_module / "go.mod").read_text()
        module_path = re.search(r"^module (\S+)", client, re.M)
        go_version = re.search(r"^go (\S+)", client, re.M)
        assert module_path is not None, "clients/go/go.mod names no module"
        assert go_version is not None, "clients/go/go.mod names no go version"
        (folder / "go.mod").write_text(
            f"module docsnippet\n\ngo {go_version[1]}\n\nrequire {module_path[1]} v0.0.0\n\n"
            f"replace {module_path[1]} => {self.go_module}\n"
        )
        (folder / "go.sum").write_text((self.go_module / "go.sum").read_text())
        return folder

    def _popen(self, block: Block, stdout: int | object = subprocess.PIPE) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", self._script(block)],
            cwd=self.workdir,
            env=self.env,
            stdout=stdout,  # type: ignore[arg-type]  # PIPE or an open file
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: SIGINT and SIGTERM reach every child
        )

    def run(self, block: Block) -> str:
        """Runs a block as documented; raises AssertionError saying what differed."""
        if block.background:
            return self._start_background(block)
        code, output = self._run_stream(block) if block.stream else self._run_to_end(block)
        assert code == block.exit_code, f"{block.where} exited {code}, documented {block.exit_code}:\n{output}"
        missing = [text for text in block.expects if text not in output]
        assert not missing, f"{block.where}: output lacks {missing}:\n{output}"
        return output

    def _run_to_end(self, block: Block) -> tuple[int, str]:
        process = self._popen(block)
        try:
            output, _ = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError(f"{block.where} did not finish in {self.timeout_s}s:\n{output}") from None
        return process.returncode, output

    def _run_stream(self, block: Block) -> tuple[int, str]:
        process = self._popen(block)
        chunks: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        reader = threading.Thread(target=lambda: chunks.extend(iter(stdout.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if all(text in "".join(chunks) for text in block.expects):
                break
            time.sleep(0.1)
        still_streaming = process.poll() is None
        if still_streaming:
            os.killpg(process.pid, signal.SIGINT)
        self._reap(process)
        reader.join(timeout=5)
        output = "".join(chunks)
        assert still_streaming, f"stream {block.where} ended by itself (exit {process.returncode}):\n{output}"
        return block.exit_code, output

    def _start_background(self, block: Block) -> str:
        log = self.workdir / f".doc-background-{len(self._background)}.log"
        with log.open("w") as handle:
            process = self._popen(block, stdout=handle)
        self._background.append((block, process, log))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            output = log.read_text()
            if all(text in output for text in block.expects):
                return output
            if process.poll() is not None:
                raise AssertionError(f"background {block.where} exited {process.returncode}:\n{output}")
            time.sleep(0.2)
        raise AssertionError(f"background {block.where} not ready in {self.timeout_s}s:\n{log.read_text()}")

    @staticmethod
    def _reap(process: subprocess.Popen[str], grace_s: float = 15.0) -> None:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> list[str]:
        """Stops the background servers (SIGTERM, as Ctrl-C in their terminal); returns their logs."""
        logs: list[str] = []
        for block, process, log in reversed(self._background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                self._reap(process)
            logs.append(f"--- {block.where} ---\n{log.read_text()}")
        self._background.clear()
        return logs
