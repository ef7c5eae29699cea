// Package report turns the output of `go test -bench` into the figures of SPEC §6, each beside its target, as a
// table for people and JSON for tools (`make bench` writes .local/bench.json).
//
// The benchmarks report their figures with b.ReportMetric under the units this package reads (enroll/s,
// p50-ms, kvops/enroll, …); the mapping from benchmark and unit to a SPEC row lives in Figures, in one place, so
// a renamed benchmark shows up as "not measured" rather than as a silently missing row.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Benchmark is one result line of `go test -bench` output.
type Benchmark struct {
	Package string `json:"package"`
	// Name is the benchmark name without the -GOMAXPROCS suffix, e.g. BenchmarkSCEPLocal/c=8.
	Name  string `json:"name"`
	Procs int    `json:"procs"`
	N     int64  `json:"n"`
	// Metrics maps a unit (ns/op, enroll/s, p50-ms, …) to its value.
	Metrics map[string]float64 `json:"metrics"`
}

// Run is everything parsed from one or more `go test -bench` outputs.
type Run struct {
	CPU        string      `json:"cpu,omitempty"`
	GOOS       string      `json:"goos,omitempty"`
	GOARCH     string      `json:"goarch,omitempty"`
	Benchmarks []Benchmark `json:"benchmarks"`
	// Failures are the FAIL lines: a benchmark that failed has no figures, and the report says why.
	Failures []string `json:"failures,omitempty"`
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-(\d+))?\s+(\d+)\s+(.*)$`)
	failLine  = regexp.MustCompile(`^(--- FAIL: \S+|FAIL\s+\S+)`)
)

// Parse reads `go test -bench` output. Lines that are not results (logs, PASS, ok) are skipped.
func Parse(r io.Reader) (*Run, error) {
	run := &Run{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		case strings.HasPrefix(line, "cpu: "):
			run.CPU = strings.TrimPrefix(line, "cpu: ")
			continue
		case strings.HasPrefix(line, "goos: "):
			run.GOOS = strings.TrimPrefix(line, "goos: ")
			continue
		case strings.HasPrefix(line, "goarch: "):
			run.GOARCH = strings.TrimPrefix(line, "goarch: ")
			continue
		}
		if m := failLine.FindStringSubmatch(line); m != nil {
			run.Failures = append(run.Failures, m[1])
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		b := Benchmark{Package: pkg, Name: m[1], Metrics: map[string]float64{}}
		if m[2] != "" {
			b.Procs, _ = strconv.Atoi(m[2])
		}
		b.N, _ = strconv.ParseInt(m[3], 10, 64)
		fields := strings.Fields(m[4])
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("report: odd value/unit pairs in %q", line)
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("report: value %q in %q: %w", fields[i], line, err)
			}
			b.Metrics[fields[i+1]] = v
		}
		run.Benchmarks = append(run.Benchmarks, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("report: reading benchmark output: %w", err)
	}
	return run, nil
}

// Metric returns the value of unit for the benchmark name (exact, without the -procs suffix). When a name was
// run more than once (several outputs, -count), the last result wins.
func (r *Run) Metric(name, unit string) (float64, bool) {
	v, ok := 0.0, false
	for _, b := range r.Benchmarks {
		if b.Name == name {
			if x, has := b.Metrics[unit]; has {
				v, ok = x, true
			}
		}
	}
	return v, ok
}

// find returns the last benchmark whose package ends with pkgSuffix and whose name matches re.
func (r *Run) find(pkgSuffix string, re *regexp.Regexp) (Benchmark, bool) {
	var found Benchmark
	ok := false
	for _, b := range r.Benchmarks {
		if strings.HasSuffix(b.Package, pkgSuffix) && re.MatchString(b.Name) {
			found, ok = b, true
		}
	}
	return found, ok
}

// Figure is one row of the report.
type Figure struct {
	ID      string `json:"id"`
	Measure string `json:"measure"`
	// Value is nil when the run did not measure it.
	Value *float64 `json:"value"`
	Unit  string   `json:"unit"`
	// Target is SPEC §6's wording ("" for a figure reported for information).
	Target string `json:"target,omitempty"`
	// Pass is nil for information-only rows and for rows without a value.
	Pass *bool `json:"pass,omitempty"`
	// Detail adds what the single value cannot say (percentiles, the comparison's inputs).
	Detail string `json:"detail,omitempty"`
	// Source names the benchmark and metric the value came from.
	Source string `json:"source,omitempty"`
}

// Report is the whole output of `make bench`.
type Report struct {
	Generated time.Time `json:"generated"`
	*Run
	Figures []Figure `json:"figures"`
}

// New builds the report for a parsed run.
func New(run *Run, now time.Time) *Report {
	return &Report{Generated: now.UTC(), Run: run, Figures: Figures(run)}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: encoding JSON: %w", err)
	}
	return nil
}

// WriteTable prints the figures beside their targets.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "MEASURE\tVALUE\tTARGET (SPEC §6)\tOK\tDETAIL\n")
	for _, f := range r.Figures {
		value := "not measured"
		if f.Value != nil {
			value = formatValue(*f.Value) + " " + f.Unit
		}
		ok := ""
		if f.Pass != nil {
			ok = map[bool]string{true: "yes", false: "NO"}[*f.Pass]
		} else if f.Target != "" && f.Value == nil {
			ok = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Measure, value, f.Target, ok, f.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Run != nil && len(r.Run.Failures) > 0 {
		if _, err := fmt.Fprintf(w, "\nfailed: %s\n", strings.Join(r.Run.Failures, ", ")); err != nil {
			return err
		}
	}
	return nil
}

func formatValue(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
