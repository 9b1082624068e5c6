"""common.data_source: resolve_data's meaning of --data auto|real|generated (present, absent, download
works, download fails), the real-mode message, nothing created on disk; download_file; short_source."""
import http.server
import threading

import pytest

from common.data_source import resolve_data, short_source, with_source
from common.download import DownloadUnavailable, download_file, fetch
from common.errors import UserError


class FakeSet:
    """A data set of one file, `<root>/FakeSet/data.txt`, with a recording of what was asked of it."""

    def __init__(self, root, *, present=False, download="fails"):
        self.folder = root / "FakeSet"
        self.calls = []
        self.download_behaviour = download
        if present:
            self.write()

    def write(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "data.txt").write_text("real rows")

    def present(self):
        self.calls.append("present")
        return (self.folder / "data.txt").exists()

    def download(self):
        self.calls.append("download")
        if self.download_behaviour == "fails":
            raise DownloadUnavailable("cannot reach example.org")
        if self.download_behaviour == "works":
            self.write()
        # "empty": finishes without leaving the files

    def read(self):
        self.calls.append("read")
        return (self.folder / "data.txt").read_text(), f"real: FakeSet (1 file) from {self.folder}"

    def stand_in(self):
        self.calls.append("stand_in")
        return "generated rows", "generated: FakeSet stand-in (seed 0)"

    def resolve(self, mode, **kwargs):
        notices = []
        options = dict(name="FakeSet", where=self.folder, needs="data.txt", present=self.present,
                       download=self.download, read=self.read, stand_in=self.stand_in, announce=notices.append)
        result = resolve_data(mode, **{**options, **kwargs})
        return result, notices


@pytest.mark.parametrize("mode", ["auto", "real"])
def test_present_files_are_read_without_a_download(tmp_path, mode):
    fake = FakeSet(tmp_path, present=True)
    (data, source), notices = fake.resolve(mode)
    assert data == "real rows" and source.startswith("real: FakeSet") and notices == []
    assert fake.calls == ["present", "read"]


@pytest.mark.parametrize("mode", ["auto", "real"])
def test_absent_files_are_downloaded_then_read(tmp_path, mode):
    fake = FakeSet(tmp_path, download="works")
    (data, source), notices = fake.resolve(mode)
    assert data == "real rows" and source.startswith("real:") and notices == []
    assert fake.calls == ["present", "download", "present", "read"]


def test_auto_falls_back_to_the_stand_in_with_one_notice(tmp_path):
    fake = FakeSet(tmp_path, download="fails")
    (data, source), notices = fake.resolve("auto")
    assert (data, source) == ("generated rows", "generated: FakeSet stand-in (seed 0)")
    assert notices == ["note: FakeSet is unavailable (cannot reach example.org); using the embedded stand-in: "
                       "generated: FakeSet stand-in (seed 0)"]
    assert "read" not in fake.calls and not fake.folder.exists()


def test_real_without_files_is_one_line_naming_the_folder_and_creates_nothing(tmp_path):
    fake = FakeSet(tmp_path / "no_root", download="fails")
    with pytest.raises(UserError) as caught:
        fake.resolve("real", hint="put data.txt there or point --data-root at it")
    message = str(caught.value)
    assert "\n" not in message
    assert message == (f"FakeSet not found under {fake.folder} (needs data.txt) and it cannot be downloaded "
                       f"(cannot reach example.org); put data.txt there or point --data-root at it")
    assert "stand_in" not in fake.calls and not (tmp_path / "no_root").exists()


def test_a_set_without_a_download_falls_back_or_fails_clearly(tmp_path):
    fake = FakeSet(tmp_path)
    (data, _), notices = fake.resolve("auto", download=None)
    assert data == "generated rows" and "no public download" in notices[0]
    with pytest.raises(UserError, match=r"FakeSet not found under .*no public download.*put the files there"):
        fake.resolve("real", download=None)


def test_a_download_that_leaves_nothing_is_a_clear_error(tmp_path):
    fake = FakeSet(tmp_path, download="empty")
    with pytest.raises(UserError, match="download of FakeSet finished but .* still lacks data.txt"):
        fake.resolve("auto")


@pytest.mark.parametrize("mode,smoke", [("generated", False), ("auto", True), ("real", True)])
def test_generated_and_smoke_never_look_for_or_fetch_the_real_files(tmp_path, mode, smoke):
    fake = FakeSet(tmp_path, present=True, download="works")
    (data, _), notices = fake.resolve(mode, smoke=smoke)
    assert data == "generated rows" and notices == [] and fake.calls == ["stand_in"]


def test_unknown_mode_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown --data 'fake'; choose one of auto, real, generated"):
        FakeSet(tmp_path).resolve("fake")


def test_with_source_pairs_data_with_its_own_source():
    class Data:
        source = "real: X"
    data = Data()
    assert with_source(data) == (data, "real: X")


def test_fetch_through_an_unreachable_host_creates_nothing(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with pytest.raises(DownloadUnavailable, match="cannot reach 127.0.0.1"):
        fetch(["http://127.0.0.1:9/file.txt"], lambda: download_file("http://127.0.0.1:9/file.txt", target))
    assert not (tmp_path / "sub").exists()


@pytest.fixture
def local_server(tmp_path):
    """A static http server on 127.0.0.1 serving tmp_path/www (no network beyond the machine)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_file_whole_and_first_lines_atomically(tmp_path, local_server):
    www, url = local_server
    (www / "rows.ndjson").write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(50)))
    whole = tmp_path / "out" / "whole.ndjson"
    fetch([url], lambda: download_file(f"{url}/rows.ndjson", whole))
    assert whole.read_bytes() == (www / "rows.ndjson").read_bytes()
    first = download_file(f"{url}/rows.ndjson", tmp_path / "out" / "first.ndjson", max_lines=7)
    assert first.read_text().splitlines() == [f'{{"n": {i}}}' for i in range(7)]
    with pytest.raises(DownloadUnavailable, match="download failed"):
        fetch([url], lambda: download_file(f"{url}/missing.ndjson", tmp_path / "out" / "missing.ndjson"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["first.ndjson", "whole.ndjson"]  # no .part


@pytest.mark.parametrize("source,label", [
    ("real: MNIST (60,000 train / 10,000 test) from data/MNIST/raw", "real: MNIST"),
    ("embedded: scikit-learn digits (1,797 real 8x8 scans upscaled to 28x28)", "embedded: scikit-learn digits"),
    ("generated: 10 pattern classes (32, 32, 3) (seed 1)", "generated: 10 pattern classes"),
    ("generated: hierarchical CIFAR-100 stand-in, 100 fine classes in 20 superclasses, 32x32x3, 100+20 per "
     "class (seed 1)", "generated: hierarchical CIFAR-100 stand-in"),
    ("real: Quick, Draw! (apple 37, cat 25) from data/quickdraw/raw", "real: Quick, Draw!"),
    ("real: MathQA dev.json split 90%/10% (seed 3): 4,027 train / 448 test, from data/MathQA",
     "real: MathQA dev.json split 90%/10%"),
    ("generated: 3,000 template word problems in MathQA's schema (12 templates, seed 3): 2,700 train / 300 test",
     "generated: 3,000 template word problems in MathQA's schema"),
    ("generated: 200 samples of sin(x) on [-3, 3] (seed 0)", "generated: 200 samples of sin(x) on [-3, 3]"),
    ("generated: the 4 XOR points", "generated: the 4 XOR points"),
    ("real: CLEVRTex from /data/clevrtex", "real: CLEVRTex"),
])
def test_short_source_keeps_the_kind_and_name(source, label):
    assert short_source(source) == label
