package store

import (
	"context"
	"fmt"
)

// migrations maps schema versions to the SQL that reaches them from the
// version before. Each feature registers its own in its file's init, so
// features do not edit one shared list. A migration is never edited once it
// has shipped: add a new version instead. Each runs in its own transaction
// together with the version bump.
var migrations = map[int]string{}

func register(version int, sql string) {
	if _, dup := migrations[version]; dup {
		panic(fmt.Sprintf("store: migration %d registered twice", version))
	}
	migrations[version] = sql
}

func init() {
	// 1: server config and projects.
	register(1, `CREATE TABLE config (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE projects (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		name        TEXT NOT NULL UNIQUE,
		description TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE projects_config (
		project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		key        TEXT NOT NULL,
		value      TEXT NOT NULL,
		PRIMARY KEY (project_id, key)
	);
	INSERT INTO projects (name, description) VALUES ('default', 'Default Moat project');
	INSERT INTO projects_config (project_id, key, value)
		SELECT id, k.key, 'true' FROM projects,
		(SELECT 'features.images' AS key UNION ALL SELECT 'features.profiles'
		 UNION ALL SELECT 'features.storage.volumes' UNION ALL SELECT 'features.storage.buckets'
		 UNION ALL SELECT 'features.networks') AS k
		WHERE projects.name = 'default';`)
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var version int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	latest := SchemaVersion()
	if version > latest {
		return fmt.Errorf("database schema version %d is newer than this moatd (%d): refusing to downgrade", version, latest)
	}
	for v := version; v < latest; v++ {
		sql, ok := migrations[v+1]
		if !ok {
			return fmt.Errorf("migration %d is missing", v+1)
		}
		err := s.Update(ctx, func(tx *Tx) error {
			if _, err := tx.exec(sql); err != nil {
				return err
			}
			_, err := tx.exec(`INSERT INTO schema_version (version) VALUES (?)`, v+1)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	return nil
}

// SchemaVersion is the newest schema version this build knows.
func SchemaVersion() int {
	latest := 0
	for v := range migrations {
		latest = max(latest, v)
	}
	return latest
}
