package main

import (
	"crypto/x509/pkix"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/store"
)

// The certificate list's columns at the widths administrators use: a tablet's and the 1024 px window (the table
// beside a narrow serial column), a laptop's 1280 px, and the wide screens of 1920 and 2560 px.

// wideBox is how a view uses a wide screen.
type wideBox struct {
	Main    float64   `json:"main"`    // the width of the page's content
	Longest int       `json:"longest"` // the most characters on one line of descriptive text
	Line    string    `json:"line"`    // that line
	Table   float64   `json:"table"`   // the certificate list's width, if the view has one
	Columns []float64 `json:"columns"` // its columns' widths
	Wide    bool      `json:"wide"`    // the page scrolls sideways
}

// measureWide reads a view's wideBox: the longest line of its descriptive text (paragraphs, hints, notices, list
// items) counted in characters where the browser drew them, and the certificate list's columns.
const measureWide = `(() => {
	let longest = 0, longLine = "";
	for (const e of document.querySelectorAll("main p, main li, main .hint, main .lead, main .notice")) {
		const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
		const lines = new Map();
		for (let n; (n = walk.nextNode());) for (let i = 0; i < n.length; i++) {
			const r = document.createRange();
			r.setStart(n, i);
			r.setEnd(n, i + 1);
			const box = r.getClientRects()[0];
			if (!box) continue;
			const top = Math.round(box.top);
			lines.set(top, (lines.get(top) || "") + n.data[i]);
		}
		for (const l of lines.values()) if (l.trim().length > longest) { longest = l.trim().length; longLine = l.trim(); }
	}
	const table = document.querySelector("#results table.list");
	return {main: document.querySelector("main").getBoundingClientRect().width, longest, line: longLine,
		table: table ? table.getBoundingClientRect().width : 0,
		columns: table ? [...table.querySelectorAll("thead th")].map((th) => th.getBoundingClientRect().width) : [],
		wide: document.documentElement.scrollWidth > document.documentElement.clientWidth};
})()`

// TestConsoleWideScreens: at 1920 and 2560 px every view keeps its descriptive text to lines of at most 120
// characters, the page's content to a readable measure (no wider than 100rem) and the certificate list's columns
// balanced (none takes more than 40% of the table). A view's lead and hints ran across the whole content width:
// the request form's hint was one line of some 150 characters, the pending records' explanation some 140.
func TestConsoleWideScreens(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, longUPN, "CSR.Request.Db"),
		pkix.Name{CommonName: "printer-frankfurt-west-017.contoso.example", OrganizationalUnit: []string{"Platform-Engineering-Infrastructure"}},
		"printer-frankfurt-west-017.contoso.example")
	issueNumbered(t, svc.base, "wide-%02d.contoso.example", "wide-%02d@azscep.local", 2)
	page := svc.base + "/api/console/"
	b.signIn(page)
	views := []struct{ hash, ready string }{
		{"#/certificates", `document.querySelectorAll("#results table.list tbody tr").length === 3`},
		{"#/certificate/" + store.SerialString(c.SerialNumber), `!!document.querySelector("#revoke-button")`},
		{"#/request", `!!document.querySelector("main textarea")`},
		{"#/overview", `!!document.querySelector("main h1") && !document.querySelector("main .loading")`},
		{"#/operations", `!!document.querySelector("main h1") && !document.querySelector("main .loading")`},
		{"#/certificates?q=no-such-certificate", `!!document.querySelector("#results .empty")`},
	}
	for _, w := range []struct{ width, height int64 }{{1920, 1080}, {2560, 1440}} {
		b.viewport(w.width, w.height)
		for _, v := range views {
			b.do("open "+v.hash, chromedp.Navigate(page+v.hash))
			b.waitFor(v.hash, v.ready)
			m := eval[wideBox](b, measureWide)
			if m.Longest > 120 {
				t.Errorf("at %d px %s has a line of %d characters, want at most 120: %q", w.width, v.hash, m.Longest, m.Line)
			}
			if m.Main > 1600 {
				t.Errorf("at %d px %s spreads its content over %.0f px, want at most 100rem", w.width, v.hash, m.Main)
			}
			for i, col := range m.Columns {
				if col > 0.4*m.Table {
					t.Errorf("at %d px the list's column %d takes %.0f of the table's %.0f px, want at most 40%%", w.width, i+1, col, m.Table)
				}
			}
			if m.Wide {
				t.Errorf("at %d px %s scrolls sideways", w.width, v.hash)
			}
		}
		b.shotViewport("wide-request-" + strconv.Itoa(int(w.width)))
	}
	b.wantNoProblems(t)
}
