// Command benchreport is the last step of `make bench`: it reads the `go test -bench` outputs named on the
// command line, prints the SPEC §6 table and writes the JSON report. A missed target is reported, not fatal:
// performance is measured here and judged by people, never asserted by a test.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/azscep/azscep/internal/loadgen/report"
)

func main() {
	jsonPath := flag.String("json", "", "where to write the JSON report (default: none)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: benchreport [-json out.json] bench-output.txt...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*jsonPath, flag.Args(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(jsonPath string, inputs []string, out io.Writer) error {
	var all bytes.Buffer
	if len(inputs) == 0 {
		if _, err := io.Copy(&all, os.Stdin); err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		all.Write(data)
		all.WriteByte('\n')
	}
	parsed, err := report.Parse(&all)
	if err != nil {
		return err
	}
	rep := report.New(parsed, time.Now())
	if err := rep.WriteTable(out); err != nil {
		return err
	}
	if jsonPath == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, buf.Bytes(), 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "\nwritten %s\n", jsonPath)
	return err
}
