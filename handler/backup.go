package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/store/tables"
)

// backupUsage and restoreUsage are the help of `azscep backup` and `azscep restore`.
const (
	backupUsage = `Usage: azscep backup -out FILE

Writes every entity of the five tables (certs, revoked, meta, revreq, runs) to FILE as JSON lines, each with its
table and its properties' types (Edm.DateTime, Edm.Binary, Edm.Int64), which the records need to be read back.
Uses your own credential on Table Storage (Storage Table Data Contributor); no Key Vault operation. The file
holds the public chain and the RA key wrapped by the key-encryption key (useless without it), and is written with
mode 0600.
`
	restoreUsage = `Usage: azscep restore -in FILE

Inserts the entities of a backup made by azscep backup into the tables (Storage Table Data Contributor). It only
inserts: an entity already present with the same properties is skipped, so a restore that stopped can be run
again; one present with other properties stops it. Entities of one partition go in 100 per transaction. Restore
into the tables of a CA that has not served yet (docs/deployment.md, section 10), with the same
AZSCEP_TABLES_PREFIX or another.
`
)

// bulkTables are the Table Storage options of a backup and a restore, which run on an operator's link rather than
// in Azure: a restore transaction (up to 1 MiB) or a backup page (up to the 64 MiB the client reads) must not be cut
// by the service's 5-second try and 10-second call timeouts, made for the service's own small calls inside Azure,
// on a link of a few Mbit/s.
func bulkTables() []tables.Option {
	retry := tables.DefaultRetry
	retry.TryTimeout = 2 * time.Minute
	return []tables.Option{tables.WithRetry(retry), tables.WithCallTimeout(5 * time.Minute)}
}

// backupCommand runs `azscep backup` (restore false) or `azscep restore`. opts.store and opts.credential replace
// Table Storage and the operator's credential in tests.
func backupCommand(ctx context.Context, cfg *config.Config, restore bool, args []string, out io.Writer, opts buildOptions) error {
	name, fileFlag := "backup", "out"
	if restore {
		name, fileFlag = "restore", "in"
	}
	fs := flag.NewFlagSet("azscep "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String(fileFlag, "", "the backup file")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 || *file == "" {
		return fmt.Errorf("%s needs -%s FILE and nothing else: %w", name, fileFlag, errUsage)
	}
	if cfg.Mode == config.ModeAzure {
		if _, _, err := operator(ctx, cfg, opts); err != nil { // who acts, before anything is touched
			return err
		}
	}
	st := opts.store
	if st == nil {
		o := bulkTables()
		if opts.tablesTransport != nil {
			o = append(o, tables.WithTransport(opts.tablesTransport))
		}
		var err error
		if st, err = openStore(ctx, cfg, o...); err != nil {
			return err
		}
	}
	ts, ok := st.(*tables.Store)
	if !ok {
		return errors.New("backup and restore need Table Storage")
	}
	if restore {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		inserted, present, err := ts.Restore(ctx, f)
		fmt.Fprintf(out, "restored: %s\nalready present: %s\n", inserted, present)
		return err
	}
	// The whole backup or nothing under the name: a temporary file renamed once complete. A new one (mode 0600,
	// O_EXCL), never a file or symbolic link already at a fixed name, which would keep its own mode or send the
	// records elsewhere.
	f, err := os.CreateTemp(filepath.Dir(*file), filepath.Base(*file)+".*.tmp")
	if err != nil {
		return fmt.Errorf("backup not written: %w", err)
	}
	tmp := f.Name()
	counts, err := ts.Backup(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, *file)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup not written: %w", err)
	}
	fmt.Fprintf(out, "backed up to %s: %s\n", *file, counts)
	return nil
}
