"""`domain-llm plots [DVC ARGS...]`: `dvc plots show` that renders offline.

    domain-llm plots                                  # dvc_plots/index.html for the workspace
    domain-llm plots --open                           # any `dvc plots show` / `dvc plots diff` argument
    domain-llm plots diff main                        # `dvc plots diff main`, offline too

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so on an offline host the curves render as
nothing. This writes an HTML template holding those libraries inline (bundled by the installed
`vl-convert-python`; no JavaScript is committed to this repository) to .dvc/tmp/ and passes it with
`--html-template`. After one run, plain `dvc plots show --html-template .dvc/tmp/plots_offline.html` works too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stages.errors import StageError
from stages.fileio import write_text

TEMPLATE = Path(".dvc/tmp/plots_offline.html")
# DVC fills {plot_divs} (and {refresh_tag}); its {scripts} placeholder, the CDN <script> tags, is left out.
PAGE = """<!DOCTYPE html>
<html>
<head>
{refresh_tag}
<meta charset="utf-8">
<title>DVC plots</title>
<!-- vega, vega-lite, vega-embed: MARKER, inlined for offline use -->
<script>BUNDLE</script>
<style>table { border-spacing: 15px; }</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def offline_template(repo: Path) -> Path:
    """The template under `repo`, written once per installed vl-convert version."""
    try:
        import vl_convert
    except ImportError:
        raise StageError("vl-convert-python is not installed: `pip install -e .` (it bundles vega for offline "
                         "plots)") from None
    version = getattr(vl_convert, "__version__", "unknown")
    path = repo / TEMPLATE
    marker = f"vl-convert-python {version}'s bundle"
    if path.is_file() and marker in path.read_text(errors="replace")[:2000]:
        return path
    bundle = vl_convert.javascript_bundle()  # assigns window.vegaEmbed, as DVC's plot divs expect
    if "</script" in bundle.lower():  # would end our <script> early; never seen, but then say so
        raise StageError("vl-convert's vega bundle contains '</script>': cannot inline it; use `dvc plots show`")
    write_text(path, PAGE.replace("MARKER", marker).replace("BUNDLE", bundle))
    return path


def main(args: list[str], repo: Path = Path(".")) -> int:
    if not (repo / ".dvc").is_dir():
        raise StageError(f"{repo.resolve()}: not a DVC repository (no .dvc/); run this in the project root")
    offline_template(repo)
    command = ["diff", *args[1:]] if args[:1] == ["diff"] else ["show", *args]
    return subprocess.run([sys.executable, "-m", "dvc", "plots", *command, "--html-template", str(TEMPLATE)],
                          cwd=repo, check=False).returncode
