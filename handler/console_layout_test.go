package main

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/store"
)

// The certificate list's columns at the widths administrators use: a tablet's and the 1024 px window (the table
// beside a narrow serial column), a laptop's 1280 px, and the wide screens of 1920 and 2560 px.

// textLines is a piece of text as the browser laid it out: its lines, read off where each character is drawn.
type textLines struct {
	Text      string   `json:"text"`
	Title     string   `json:"title"`
	Lines     []string `json:"lines"`
	Right     float64  `json:"right"`     // the right edge of its rightmost character
	CellRight float64  `json:"cellRight"` // the right edge of its cell's content box
	Cut       bool     `json:"cut"`       // its element is drawn narrower than its text (overflow hidden)
	Mono      bool     `json:"mono"`
	Href      string   `json:"href"` // the row's link to its certificate
}

// measureLines returns the textLines of every element that the CSS selector sel (a JavaScript string) finds.
func measureLines(sel string) string {
	return `[...document.querySelectorAll(` + sel + `)].map((e) => {
	const chars = [];
	const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
	for (let n; (n = walk.nextNode());) for (let i = 0; i < n.length; i++) {
		const r = document.createRange();
		r.setStart(n, i);
		r.setEnd(n, i + 1);
		const box = r.getClientRects()[0];
		chars.push({c: n.data[i], top: box ? box.top : NaN, right: box ? box.right : NaN});
	}
	const lines = [];
	let line = "";
	chars.forEach((ch, i) => {
		if (i > 0 && ch.top > chars[i - 1].top + 2) {
			lines.push(line);
			line = "";
		}
		line += ch.c;
	});
	lines.push(line);
	const td = e.closest("td"), tr = td.getBoundingClientRect();
	const link = e.closest("tr").querySelector("a.subject, td:first-child a");
	return {text: e.textContent, title: e.title, lines, right: Math.max(...chars.map((ch) => ch.right)),
		cellRight: tr.right - parseFloat(getComputedStyle(td).paddingRight), cut: e.scrollWidth > e.clientWidth + 0.5,
		mono: /mono/i.test(getComputedStyle(e).fontFamily), href: link ? link.getAttribute("href") : ""};
})`
}

// TestConsoleListNamesWrapAtSeparators: a long requester UPN, a device ID and a subject in the certificate list
// wrap only after an "@", ".", "-" or "_" (a subject after an RDN's comma too), never inside a word, at a phone's
// width, 1024, 1280, 1920 and 2560 px; each stays within its cell and is still the whole name to copy, the
// requester with the record's value on hover. At 1280 px the cell broke longUPN at whatever letter the column
// ended: "alexandra.konstantinop" over "oulou.verwaltung@con" over "tosoholdinginternation".
func TestConsoleListNamesWrapAtSeparators(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	ctx := context.Background()
	long := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, longUPN, "CSR.Request.Db"),
		pkix.Name{CommonName: "node-00.datacenter-frankfurt-west.contoso.example", OrganizationalUnit: []string{"Platform-Engineering-Infrastructure-Operations"}},
		"node-00.datacenter-frankfurt-west.contoso.example", "node-01.datacenter-frankfurt-west.contoso.example")
	dev := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "ops@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "kiosk-0001"})
	rec, err := svc.store.Get(ctx, store.SerialString(dev.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	const device = "3f2c1a0e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
	rec.DeviceID = device
	if err := svc.store.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	longRec, err := svc.store.Get(ctx, store.SerialString(long.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	page := svc.base + "/api/console/"
	b.signIn(page)
	for _, w := range []struct{ width, height int64 }{{390, 844}, {1024, 768}, {1280, 800}, {1920, 1080}, {2560, 1440}} {
		b.viewport(w.width, w.height)
		b.do("list", chromedp.Navigate(page+"#/certificates"))
		b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 2`)
		names := eval[[]textLines](b, measureLines(`'#results td[data-label="Requester"] > :first-child'`))
		devices := eval[[]textLines](b, measureLines(`'#results td[data-label="Requester"] > div'`))
		subjects := eval[[]textLines](b, measureLines(`'#results td[data-label="Subject"] > a'`))
		if len(names) != 2 || len(devices) != 1 {
			t.Fatalf("at %d px the list shows %d requesters and %d device IDs, want 2 and 1", w.width, len(names), len(devices))
		}
		found := false
		for _, n := range names {
			if n.Text == longUPN {
				found = true
				if n.Title != longRec.Requester {
					t.Errorf("at %d px the requester %s has the hover text %q, want the record's %q", w.width, n.Text, n.Title, longRec.Requester)
				}
				if w.width >= 1024 && w.width < 1920 && len(n.Lines) < 2 {
					t.Errorf("at %d px the requester %s takes one line: the test no longer crowds it", w.width, n.Text)
				}
			}
		}
		if !found {
			t.Errorf("at %d px no requester reads %q", w.width, longUPN)
		}
		if got := devices[0].Text; got != "device "+device || devices[0].Title != device {
			t.Errorf("at %d px the device line reads %q with the hover text %q, want the device ID %s whole", w.width, got, devices[0].Title, device)
		}
		for _, n := range append(append(names, devices...), subjects...) {
			for i, l := range n.Lines[:len(n.Lines)-1] {
				if !strings.ContainsAny(l[len(l)-1:], "@.-_, ") {
					t.Errorf("at %d px %q breaks inside a word: line %d is %q, the next %q", w.width, n.Text, i+1, l, n.Lines[i+1])
				}
			}
			if n.Right > n.CellRight+0.5 {
				t.Errorf("at %d px %q ends at %.0f px, past its cell (%.0f px)", w.width, n.Text, n.Right, n.CellRight)
			}
		}
		if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
			t.Errorf("at %d px the list scrolls sideways", w.width)
		}
		b.shotViewport(fmt.Sprintf("list-requester-%d", w.width))
	}
	b.wantNoProblems(t)
}

// TestConsoleListSerialWholeOnTablets: between a phone's card and 1280 px (a tablet, the 1024 px window, 1152 and
// 1279 px) the table has no room for a serial on one line beside a long subject and requester; the serial is all
// there regardless, in lines of one fixed length (the last one shorter) in a monospace font, within its cell, and
// a double-click selects exactly the record's serial, without a space or a line break added. It was cut to its
// first 13 letters and an ellipsis, the rest out of sight.
func TestConsoleListSerialWholeOnTablets(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	var sans []string
	for i := range 4 {
		sans = append(sans, fmt.Sprintf("node-%02d.datacenter-frankfurt-west.contoso.example", i))
	}
	issueViaAPI(t, svc.base, devTokenAs(t, svc.base, longUPN, "CSR.Request.Db"),
		pkix.Name{CommonName: sans[0], OrganizationalUnit: []string{"Platform-Engineering-Infrastructure-Operations"}}, sans...)
	issueNumbered(t, svc.base, "serial-%02d.contoso.example", "serial-%02d@azscep.local", 2)
	page := svc.base + "/api/console/"
	b.signIn(page)
	for _, w := range []struct{ width, height int64 }{{800, 1024}, {1024, 768}, {1152, 864}, {1279, 800}} {
		b.viewport(w.width, w.height)
		b.do("list", chromedp.Navigate(page+"#/certificates"))
		b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 3`)
		serials := eval[[]textLines](b, measureLines(`'#results td[data-label="Serial"] > *'`))
		if len(serials) != 3 {
			t.Fatalf("at %d px the list shows %d serials, want 3", w.width, len(serials))
		}
		for _, s := range serials {
			want := strings.TrimPrefix(s.Href, "#/certificate/")
			if len(want) < 32 || s.Text != want || s.Title != want || strings.Join(s.Lines, "") != want {
				t.Errorf("at %d px a serial reads %q in the lines %q with the hover text %q, want the record's %q in all three", w.width, s.Text, s.Lines, s.Title, want)
			}
			if s.Cut || s.Right > s.CellRight+0.5 {
				t.Errorf("at %d px the serial %s is cut (cut %v, its last letter ends at %.0f px, its cell at %.0f px)", w.width, s.Text, s.Cut, s.Right, s.CellRight)
			}
			if !s.Mono {
				t.Errorf("at %d px the serial %s is not in a monospace font", w.width, s.Text)
			}
			for i, l := range s.Lines {
				if len(l) < 8 && i < len(s.Lines)-1 || len(l) != len(s.Lines[0]) && i < len(s.Lines)-1 || len(l) > len(s.Lines[0]) {
					t.Errorf("at %d px the serial %s is in the lines %q, want lines of one length of at least 8 (the last may be shorter)", w.width, s.Text, s.Lines)
					break
				}
			}
		}
		if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
			t.Errorf("at %d px the list scrolls sideways", w.width)
		}
		for i := range serials {
			// A double-click where the serial's first line is drawn (its element's centre is a line further down).
			at := eval[[]float64](b, fmt.Sprintf(`(() => {
				const e = document.querySelectorAll('#results td[data-label="Serial"] > *')[%d];
				e.scrollIntoView({block: "center"});
				const r = e.getClientRects()[0], line = parseFloat(getComputedStyle(e).lineHeight);
				return [r.left + 4, r.top + line / 2];
			})()`, i))
			b.do("double-click a serial", chromedp.Evaluate[chromedp.Void](`getSelection().removeAllRanges()`),
				chromedp.MouseClickXY(at[0], at[1]), chromedp.MouseClickXY(at[0], at[1], chromedp.ClickCount(2)))
			if got := eval[string](b, `getSelection().toString()`); got != serials[i].Text {
				t.Errorf("at %d px a double-click on the serial selects %q, want %q", w.width, got, serials[i].Text)
			}
		}
		b.shotViewport(fmt.Sprintf("list-serials-wrapped-%d", w.width))
	}
	b.wantNoProblems(t)
}

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
