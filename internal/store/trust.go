package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/moat/moat/internal/errdefs"
)

func init() {
	// 2: the trust store (client certificates, restricted to projects by
	// id so project renames follow and deletions drop the grant) and
	// pending trust tokens. Token rows outlive their use for a day
	// (used_at set) so a replayed secret is recognised and audited.
	register(2, `CREATE TABLE certificates (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		fingerprint TEXT NOT NULL UNIQUE,
		type        TEXT NOT NULL,
		name        TEXT NOT NULL,
		certificate TEXT NOT NULL,
		restricted  INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE certificates_projects (
		certificate_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
		project_id     INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		PRIMARY KEY (certificate_id, project_id)
	);
	CREATE TABLE tokens (
		id         TEXT PRIMARY KEY,
		secret     TEXT NOT NULL,
		name       TEXT NOT NULL,
		restricted INTEGER NOT NULL DEFAULT 0,
		projects   TEXT NOT NULL DEFAULT '[]',
		creator    TEXT NOT NULL DEFAULT '{}',
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL DEFAULT 0,
		used_at    INTEGER NOT NULL DEFAULT 0
	);`)
}

// Certificate is a trust store entry.
type Certificate struct {
	Fingerprint string
	Type        string
	Name        string
	// Certificate is the PEM encoding.
	Certificate string
	Restricted  bool
	Projects    []string
}

// Certificates lists the trust store, ordered by fingerprint.
func (t *Tx) Certificates() ([]Certificate, error) {
	rows, err := t.query(`SELECT id, fingerprint, type, name, certificate, restricted FROM certificates ORDER BY fingerprint`)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	type row struct {
		id int64
		c  Certificate
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.c.Fingerprint, &r.c.Type, &r.c.Name, &r.c.Certificate, &r.c.Restricted); err != nil {
			rows.Close()
			return nil, err
		}
		list = append(list, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	projects := map[int64][]string{}
	prow, err := t.query(`SELECT cp.certificate_id, p.name FROM certificates_projects cp JOIN projects p ON p.id = cp.project_id ORDER BY p.name`)
	if err != nil {
		return nil, err
	}
	for prow.Next() {
		var id int64
		var name string
		if err := prow.Scan(&id, &name); err != nil {
			prow.Close()
			return nil, err
		}
		projects[id] = append(projects[id], name)
	}
	prow.Close()
	if err := prow.Err(); err != nil {
		return nil, err
	}
	out := make([]Certificate, 0, len(list))
	for _, r := range list {
		r.c.Projects = projects[r.id]
		if r.c.Projects == nil {
			r.c.Projects = []string{}
		}
		out = append(out, r.c)
	}
	return out, nil
}

// CreateCertificate adds c to the trust store. A duplicate fingerprint is
// a conflict; an unknown project is invalid.
func (t *Tx) CreateCertificate(c Certificate) error {
	res, err := t.exec(`INSERT INTO certificates (fingerprint, type, name, certificate, restricted) VALUES (?, ?, ?, ?, ?)`,
		c.Fingerprint, c.Type, c.Name, c.Certificate, c.Restricted)
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Certificate already in trust store")
	}
	if err != nil {
		return fmt.Errorf("store certificate: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	return t.putCertificateProjects(id, c.Projects)
}

// UpdateCertificate replaces the entry fingerprint with c (whose
// fingerprint may differ when the certificate itself changes).
func (t *Tx) UpdateCertificate(fingerprint string, c Certificate) error {
	var id int64
	err := t.queryRow(`SELECT id FROM certificates WHERE fingerprint = ?`, fingerprint).Scan(&id)
	if isNoRows(err) {
		return errdefs.NotFoundf("Certificate not found")
	}
	if err != nil {
		return err
	}
	_, err = t.exec(`UPDATE certificates SET fingerprint = ?, type = ?, name = ?, certificate = ?, restricted = ? WHERE id = ?`,
		c.Fingerprint, c.Type, c.Name, c.Certificate, c.Restricted, id)
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Certificate already in trust store")
	}
	if err != nil {
		return fmt.Errorf("update certificate: %w", err)
	}
	if _, err := t.exec(`DELETE FROM certificates_projects WHERE certificate_id = ?`, id); err != nil {
		return err
	}
	return t.putCertificateProjects(id, c.Projects)
}

// DeleteCertificate removes an entry.
func (t *Tx) DeleteCertificate(fingerprint string) error {
	res, err := t.exec(`DELETE FROM certificates WHERE fingerprint = ?`, fingerprint)
	if err != nil {
		return fmt.Errorf("delete certificate: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFoundf("Certificate not found")
	}
	return nil
}

func (t *Tx) putCertificateProjects(id int64, projects []string) error {
	for _, p := range projects {
		var pid int64
		err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, p).Scan(&pid)
		if isNoRows(err) {
			return errdefs.Invalidf("Invalid value for field \"projects\": project %q does not exist", p)
		}
		if err != nil {
			return err
		}
		if _, err := t.exec(`INSERT OR IGNORE INTO certificates_projects (certificate_id, project_id) VALUES (?, ?)`, id, pid); err != nil {
			return err
		}
	}
	return nil
}

// Token is a certificate-add trust token.
type Token struct {
	ID         string // the id of the operation that represents it
	Secret     string
	Name       string
	Restricted bool
	Projects   []string
	// Creator is the JSON of the creating identity's requestor.
	Creator   json.RawMessage
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	UsedAt    time.Time // zero: pending
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// CreateToken stores a new pending token.
func (t *Tx) CreateToken(tok Token) error {
	projects, err := json.Marshal(tok.Projects)
	if err != nil {
		return err
	}
	if tok.Creator == nil {
		tok.Creator = json.RawMessage("{}")
	}
	_, err = t.exec(`INSERT INTO tokens (id, secret, name, restricted, projects, creator, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		tok.ID, tok.Secret, tok.Name, tok.Restricted, string(projects), string(tok.Creator), unixOrZero(tok.CreatedAt), unixOrZero(tok.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

// Tokens lists every token row, pending and recently used.
func (t *Tx) Tokens() ([]Token, error) {
	rows, err := t.query(`SELECT id, secret, name, restricted, projects, creator, created_at, expires_at, used_at FROM tokens ORDER BY created_at`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var tok Token
		var projects, creator string
		var created, expires, used int64
		if err := rows.Scan(&tok.ID, &tok.Secret, &tok.Name, &tok.Restricted, &projects, &creator, &created, &expires, &used); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(projects), &tok.Projects); err != nil {
			return nil, fmt.Errorf("token %s: projects: %w", tok.ID, err)
		}
		tok.Creator = json.RawMessage(creator)
		tok.CreatedAt, tok.ExpiresAt, tok.UsedAt = fromUnix(created), fromUnix(expires), fromUnix(used)
		out = append(out, tok)
	}
	return out, rows.Err()
}

// ConsumeToken marks a pending token used at now. It reports false if the
// token was not pending (already used or gone), which makes redemption
// single-use even under concurrent attempts.
func (t *Tx) ConsumeToken(id string, now time.Time) (bool, error) {
	res, err := t.exec(`UPDATE tokens SET used_at = ? WHERE id = ? AND used_at = 0`, now.UnixNano(), id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeleteToken removes a token row (revocation).
func (t *Tx) DeleteToken(id string) error {
	_, err := t.exec(`DELETE FROM tokens WHERE id = ?`, id)
	return err
}

// PruneTokens deletes token rows used before usedBefore.
func (t *Tx) PruneTokens(usedBefore time.Time) error {
	_, err := t.exec(`DELETE FROM tokens WHERE used_at != 0 AND used_at < ?`, usedBefore.UnixNano())
	return err
}
