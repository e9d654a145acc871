package store

import "fmt"

// ServerConfig reads the whole server config.
func (t *Tx) ServerConfig() (map[string]string, error) {
	return t.stringMap(`SELECT key, value FROM config`)
}

// ReplaceServerConfig replaces the whole server config with cfg.
func (t *Tx) ReplaceServerConfig(cfg map[string]string) error {
	if _, err := t.exec(`DELETE FROM config`); err != nil {
		return fmt.Errorf("clear server config: %w", err)
	}
	for k, v := range cfg {
		if _, err := t.exec(`INSERT INTO config (key, value) VALUES (?, ?)`, k, v); err != nil {
			return fmt.Errorf("store server config %q: %w", k, err)
		}
	}
	return nil
}

func (t *Tx) stringMap(q string, args ...any) (map[string]string, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}
