package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/moat/moat/internal/errdefs"
)

func init() {
	// 3: storage pools, images and aliases, profiles, instances. Config
	// and device maps are stored as JSON objects: they are always read
	// and written whole, and validated by package config before they get
	// here. Project-scoped rows reference the project by id, so a
	// project rename carries them along and a project's own default
	// profile goes away with it.
	register(3, `CREATE TABLE storage_pools (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		name        TEXT NOT NULL UNIQUE,
		driver      TEXT NOT NULL,
		description TEXT NOT NULL DEFAULT '',
		config      TEXT NOT NULL DEFAULT '{}'
	);
	CREATE TABLE images (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		fingerprint  TEXT NOT NULL,
		filename     TEXT NOT NULL DEFAULT '',
		size         INTEGER NOT NULL,
		public       INTEGER NOT NULL DEFAULT 0,
		auto_update  INTEGER NOT NULL DEFAULT 0,
		architecture TEXT NOT NULL,
		type         TEXT NOT NULL DEFAULT 'container',
		properties   TEXT NOT NULL DEFAULT '{}',
		created_at   TEXT NOT NULL,
		uploaded_at  TEXT NOT NULL,
		last_used_at TEXT NOT NULL DEFAULT '',
		UNIQUE (project_id, fingerprint)
	);
	CREATE TABLE images_aliases (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		name        TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		description TEXT NOT NULL DEFAULT '',
		UNIQUE (project_id, name)
	);
	CREATE TABLE profiles (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		name        TEXT NOT NULL,
		description TEXT NOT NULL DEFAULT '',
		config      TEXT NOT NULL DEFAULT '{}',
		devices     TEXT NOT NULL DEFAULT '{}',
		UNIQUE (project_id, name)
	);
	CREATE TABLE instances (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE RESTRICT,
		name         TEXT NOT NULL,
		type         TEXT NOT NULL DEFAULT 'container',
		architecture TEXT NOT NULL,
		description  TEXT NOT NULL DEFAULT '',
		ephemeral    INTEGER NOT NULL DEFAULT 0,
		profiles     TEXT NOT NULL DEFAULT '[]',
		config       TEXT NOT NULL DEFAULT '{}',
		devices      TEXT NOT NULL DEFAULT '{}',
		created_at   TEXT NOT NULL,
		last_used_at TEXT NOT NULL DEFAULT '',
		UNIQUE (project_id, name)
	);`)

	projectUsers = append(projectUsers,
		`SELECT '/1.0/instances/' || i.name || CASE WHEN p.name = 'default' THEN '' ELSE '?project=' || p.name END
		 FROM instances i JOIN projects p ON p.id = i.project_id WHERE p.name = ? ORDER BY i.name`,
		// A project's own default profile does not keep it from being deleted.
		`SELECT '/1.0/profiles/' || f.name || CASE WHEN p.name = 'default' THEN '' ELSE '?project=' || p.name END
		 FROM profiles f JOIN projects p ON p.id = f.project_id WHERE p.name = ? AND f.name != 'default' ORDER BY f.name`,
		`SELECT '/1.0/images/' || m.fingerprint || CASE WHEN p.name = 'default' THEN '' ELSE '?project=' || p.name END
		 FROM images m JOIN projects p ON p.id = m.project_id WHERE p.name = ? ORDER BY m.fingerprint`,
	)
}

const timeFormat = time.RFC3339Nano

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(timeFormat, s)
	return t
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func fromJSON[T any](s string) T {
	var v T
	_ = json.Unmarshal([]byte(s), &v)
	return v
}

func (t *Tx) projectID(project string) (int64, error) {
	var id int64
	err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, project).Scan(&id)
	if isNoRows(err) {
		return 0, errdefs.NotFoundf("Project %q not found", project)
	}
	return id, err
}

// Devices maps device names to their config.
type Devices map[string]map[string]string

// StoragePool is a stored storage pool.
type StoragePool struct {
	Name, Driver, Description string
	Config                    map[string]string
}

// StoragePools lists the pools by name.
func (t *Tx) StoragePools() ([]StoragePool, error) {
	rows, err := t.query(`SELECT name, driver, description, config FROM storage_pools ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoragePool
	for rows.Next() {
		var p StoragePool
		var cfg string
		if err := rows.Scan(&p.Name, &p.Driver, &p.Description, &cfg); err != nil {
			return nil, err
		}
		p.Config = fromJSON[map[string]string](cfg)
		out = append(out, p)
	}
	return out, rows.Err()
}

// StoragePool returns one pool.
func (t *Tx) StoragePool(name string) (StoragePool, error) {
	p := StoragePool{Name: name}
	var cfg string
	err := t.queryRow(`SELECT driver, description, config FROM storage_pools WHERE name = ?`, name).Scan(&p.Driver, &p.Description, &cfg)
	if isNoRows(err) {
		return p, errdefs.NotFoundf("Storage pool not found")
	}
	p.Config = fromJSON[map[string]string](cfg)
	return p, err
}

// CreateStoragePool stores a pool.
func (t *Tx) CreateStoragePool(p StoragePool) error {
	_, err := t.exec(`INSERT INTO storage_pools (name, driver, description, config) VALUES (?, ?, ?, ?)`,
		p.Name, p.Driver, p.Description, toJSON(p.Config))
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Storage pool %q already exists", p.Name)
	}
	return err
}

// UpdateStoragePool replaces a pool's description and config.
func (t *Tx) UpdateStoragePool(p StoragePool) error {
	_, err := t.exec(`UPDATE storage_pools SET description = ?, config = ? WHERE name = ?`, p.Description, toJSON(p.Config), p.Name)
	return err
}

// DeleteStoragePool removes a pool row.
func (t *Tx) DeleteStoragePool(name string) error {
	_, err := t.exec(`DELETE FROM storage_pools WHERE name = ?`, name)
	return err
}

// Image is a stored image.
type Image struct {
	Project      string
	Fingerprint  string
	Filename     string
	Size         int64
	Public       bool
	AutoUpdate   bool
	Architecture string
	Type         string
	Properties   map[string]string
	CreatedAt    time.Time
	UploadedAt   time.Time
	LastUsedAt   time.Time
}

const imageCols = `p.name, m.fingerprint, m.filename, m.size, m.public, m.auto_update, m.architecture, m.type, m.properties, m.created_at, m.uploaded_at, m.last_used_at`

func scanImage(sc interface{ Scan(...any) error }) (Image, error) {
	var m Image
	var props, c, u, l string
	err := sc.Scan(&m.Project, &m.Fingerprint, &m.Filename, &m.Size, &m.Public, &m.AutoUpdate, &m.Architecture, &m.Type, &props, &c, &u, &l)
	m.Properties = fromJSON[map[string]string](props)
	m.CreatedAt, m.UploadedAt, m.LastUsedAt = parseTime(c), parseTime(u), parseTime(l)
	return m, err
}

// Images lists a project's images (every project's when project is "").
func (t *Tx) Images(project string) ([]Image, error) {
	rows, err := t.query(`SELECT `+imageCols+` FROM images m JOIN projects p ON p.id = m.project_id
		WHERE ? = '' OR p.name = ? ORDER BY m.fingerprint`, project, project)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Image
	for rows.Next() {
		m, err := scanImage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Image returns the image of project whose fingerprint starts with prefix
// (which must be unambiguous).
func (t *Tx) Image(project, prefix string) (Image, error) {
	rows, err := t.query(`SELECT `+imageCols+` FROM images m JOIN projects p ON p.id = m.project_id
		WHERE p.name = ? AND substr(m.fingerprint, 1, length(?)) = ? LIMIT 2`, project, prefix, prefix)
	if err != nil {
		return Image{}, err
	}
	defer rows.Close()
	var out []Image
	for rows.Next() {
		m, err := scanImage(rows)
		if err != nil {
			return Image{}, err
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return Image{}, err
	}
	switch {
	case len(out) == 0 || prefix == "":
		return Image{}, errdefs.NotFoundf("Image not found")
	case len(out) > 1:
		return Image{}, errdefs.Invalidf("Image fingerprint prefix %q is ambiguous", prefix)
	}
	return out[0], nil
}

// ImageUsers counts the image's projects' rows referencing fingerprint in
// any project (the files are shared).
func (t *Tx) ImageRefs(fingerprint string) (int, error) {
	var n int
	err := t.queryRow(`SELECT count(*) FROM images WHERE fingerprint = ?`, fingerprint).Scan(&n)
	return n, err
}

// CreateImage stores an image row.
func (t *Tx) CreateImage(m Image) error {
	pid, err := t.projectID(m.Project)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO images (project_id, fingerprint, filename, size, public, auto_update, architecture, type, properties, created_at, uploaded_at, last_used_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, pid, m.Fingerprint, m.Filename, m.Size, m.Public, m.AutoUpdate,
		m.Architecture, m.Type, toJSON(m.Properties), fmtTime(m.CreatedAt), fmtTime(m.UploadedAt), fmtTime(m.LastUsedAt))
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Image with same fingerprint already exists")
	}
	return err
}

// UpdateImage replaces the writable fields of an image.
func (t *Tx) UpdateImage(m Image) error {
	_, err := t.exec(`UPDATE images SET public = ?, auto_update = ?, properties = ?, last_used_at = ?
		WHERE fingerprint = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`,
		m.Public, m.AutoUpdate, toJSON(m.Properties), fmtTime(m.LastUsedAt), m.Fingerprint, m.Project)
	return err
}

// DeleteImage removes an image and its aliases in project.
func (t *Tx) DeleteImage(project, fingerprint string) error {
	pid, err := t.projectID(project)
	if err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM images_aliases WHERE project_id = ? AND fingerprint = ?`, pid, fingerprint); err != nil {
		return err
	}
	_, err = t.exec(`DELETE FROM images WHERE project_id = ? AND fingerprint = ?`, pid, fingerprint)
	return err
}

// ImageAlias is a stored alias.
type ImageAlias struct {
	Project, Name, Fingerprint, Description string
}

// ImageAliases lists a project's aliases.
func (t *Tx) ImageAliases(project string) ([]ImageAlias, error) {
	rows, err := t.query(`SELECT a.name, a.fingerprint, a.description FROM images_aliases a JOIN projects p ON p.id = a.project_id
		WHERE p.name = ? ORDER BY a.name`, project)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ImageAlias
	for rows.Next() {
		a := ImageAlias{Project: project}
		if err := rows.Scan(&a.Name, &a.Fingerprint, &a.Description); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ImageAlias returns one alias.
func (t *Tx) ImageAlias(project, name string) (ImageAlias, error) {
	a := ImageAlias{Project: project, Name: name}
	err := t.queryRow(`SELECT a.fingerprint, a.description FROM images_aliases a JOIN projects p ON p.id = a.project_id
		WHERE p.name = ? AND a.name = ?`, project, name).Scan(&a.Fingerprint, &a.Description)
	if isNoRows(err) {
		return a, errdefs.NotFoundf("Image alias not found")
	}
	return a, err
}

// CreateImageAlias stores an alias.
func (t *Tx) CreateImageAlias(a ImageAlias) error {
	pid, err := t.projectID(a.Project)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO images_aliases (project_id, name, fingerprint, description) VALUES (?, ?, ?, ?)`,
		pid, a.Name, a.Fingerprint, a.Description)
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Alias %q already exists", a.Name)
	}
	return err
}

// UpdateImageAlias changes an alias's target and description.
func (t *Tx) UpdateImageAlias(a ImageAlias) error {
	_, err := t.exec(`UPDATE images_aliases SET fingerprint = ?, description = ?
		WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, a.Fingerprint, a.Description, a.Name, a.Project)
	return err
}

// RenameImageAlias renames an alias.
func (t *Tx) RenameImageAlias(project, from, to string) error {
	_, err := t.exec(`UPDATE images_aliases SET name = ? WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, to, from, project)
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Alias %q already exists", to)
	}
	return err
}

// DeleteImageAlias removes an alias.
func (t *Tx) DeleteImageAlias(project, name string) error {
	_, err := t.exec(`DELETE FROM images_aliases WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, name, project)
	return err
}

// Profile is a stored profile.
type Profile struct {
	Project, Name, Description string
	Config                     map[string]string
	Devices                    Devices
}

// Profiles lists a project's profiles.
func (t *Tx) Profiles(project string) ([]Profile, error) {
	rows, err := t.query(`SELECT f.name, f.description, f.config, f.devices FROM profiles f JOIN projects p ON p.id = f.project_id
		WHERE p.name = ? ORDER BY f.name`, project)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Profile
	for rows.Next() {
		f := Profile{Project: project}
		var cfg, dev string
		if err := rows.Scan(&f.Name, &f.Description, &cfg, &dev); err != nil {
			return nil, err
		}
		f.Config, f.Devices = fromJSON[map[string]string](cfg), fromJSON[Devices](dev)
		out = append(out, f)
	}
	return out, rows.Err()
}

// Profile returns one profile.
func (t *Tx) Profile(project, name string) (Profile, error) {
	f := Profile{Project: project, Name: name}
	var cfg, dev string
	err := t.queryRow(`SELECT f.description, f.config, f.devices FROM profiles f JOIN projects p ON p.id = f.project_id
		WHERE p.name = ? AND f.name = ?`, project, name).Scan(&f.Description, &cfg, &dev)
	if isNoRows(err) {
		return f, errdefs.NotFoundf("Profile not found")
	}
	f.Config, f.Devices = fromJSON[map[string]string](cfg), fromJSON[Devices](dev)
	return f, err
}

// CreateProfile stores a profile.
func (t *Tx) CreateProfile(f Profile) error {
	pid, err := t.projectID(f.Project)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO profiles (project_id, name, description, config, devices) VALUES (?, ?, ?, ?, ?)`,
		pid, f.Name, f.Description, toJSON(nonNil(f.Config)), toJSON(nonNilDevices(f.Devices)))
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Profile %q already exists", f.Name)
	}
	return err
}

// UpdateProfile replaces a profile's description, config and devices.
func (t *Tx) UpdateProfile(f Profile) error {
	_, err := t.exec(`UPDATE profiles SET description = ?, config = ?, devices = ?
		WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`,
		f.Description, toJSON(nonNil(f.Config)), toJSON(nonNilDevices(f.Devices)), f.Name, f.Project)
	return err
}

// RenameProfile renames a profile and rewrites the profile lists of users,
// the instances that use it. The caller finds those: they may live in
// other projects, every project that takes its profiles from project.
func (t *Tx) RenameProfile(project, from, to string, users []Instance) error {
	res, err := t.exec(`UPDATE profiles SET name = ? WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, to, from, project)
	if err != nil {
		if isUniqueViolation(err) {
			return errdefs.Conflictf("Profile %q already exists", to)
		}
		return err
	}
	if err := mustAffect(res, "Profile not found"); err != nil {
		return err
	}
	for _, in := range users {
		in.Profiles = slices.Clone(in.Profiles) // the caller's users stay as they were
		changed := false
		for i, p := range in.Profiles {
			if p == from {
				in.Profiles[i], changed = to, true
			}
		}
		if changed {
			if err := t.UpdateInstance(in); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteProfile removes a profile.
func (t *Tx) DeleteProfile(project, name string) error {
	_, err := t.exec(`DELETE FROM profiles WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, name, project)
	return err
}

// Instance is a stored instance.
type Instance struct {
	Project      string
	Name         string
	Type         string
	Architecture string
	Description  string
	Ephemeral    bool
	Profiles     []string
	Config       map[string]string
	Devices      Devices
	CreatedAt    time.Time
	LastUsedAt   time.Time
}

const instanceCols = `p.name, i.name, i.type, i.architecture, i.description, i.ephemeral, i.profiles, i.config, i.devices, i.created_at, i.last_used_at`

func scanInstance(sc interface{ Scan(...any) error }) (Instance, error) {
	var in Instance
	var prof, cfg, dev, c, l string
	err := sc.Scan(&in.Project, &in.Name, &in.Type, &in.Architecture, &in.Description, &in.Ephemeral, &prof, &cfg, &dev, &c, &l)
	in.Profiles = fromJSON[[]string](prof)
	if in.Profiles == nil {
		in.Profiles = []string{}
	}
	in.Config, in.Devices = nonNil(fromJSON[map[string]string](cfg)), nonNilDevices(fromJSON[Devices](dev))
	in.CreatedAt, in.LastUsedAt = parseTime(c), parseTime(l)
	return in, err
}

// Instances lists the instances of project ("" for all projects).
func (t *Tx) Instances(project string) ([]Instance, error) {
	rows, err := t.query(`SELECT `+instanceCols+` FROM instances i JOIN projects p ON p.id = i.project_id
		WHERE ? = '' OR p.name = ? ORDER BY p.name, i.name`, project, project)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// Instance returns one instance.
func (t *Tx) Instance(project, name string) (Instance, error) {
	in, err := scanInstance(t.queryRow(`SELECT `+instanceCols+` FROM instances i JOIN projects p ON p.id = i.project_id
		WHERE p.name = ? AND i.name = ?`, project, name))
	if isNoRows(err) {
		return in, errdefs.NotFoundf("Instance not found")
	}
	return in, err
}

// CreateInstance stores an instance.
func (t *Tx) CreateInstance(in Instance) error {
	pid, err := t.projectID(in.Project)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO instances (project_id, name, type, architecture, description, ephemeral, profiles, config, devices, created_at, last_used_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, pid, in.Name, in.Type, in.Architecture, in.Description, in.Ephemeral,
		toJSON(nonNilList(in.Profiles)), toJSON(nonNil(in.Config)), toJSON(nonNilDevices(in.Devices)), fmtTime(in.CreatedAt), fmtTime(in.LastUsedAt))
	if err != nil && isUniqueViolation(err) {
		return errdefs.Conflictf("Instance %q already exists", in.Name)
	}
	return err
}

// UpdateInstance replaces an instance's mutable fields.
func (t *Tx) UpdateInstance(in Instance) error {
	res, err := t.exec(`UPDATE instances SET description = ?, ephemeral = ?, profiles = ?, config = ?, devices = ?, last_used_at = ?
		WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`,
		in.Description, in.Ephemeral, toJSON(nonNilList(in.Profiles)), toJSON(nonNil(in.Config)), toJSON(nonNilDevices(in.Devices)),
		fmtTime(in.LastUsedAt), in.Name, in.Project)
	if err != nil {
		return err
	}
	return mustAffect(res, "Instance not found")
}

// RenameInstance renames an instance.
func (t *Tx) RenameInstance(project, from, to string) error {
	res, err := t.exec(`UPDATE instances SET name = ? WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, to, from, project)
	if err != nil {
		if isUniqueViolation(err) {
			return errdefs.Conflictf("Instance %q already exists", to)
		}
		return err
	}
	return mustAffect(res, "Instance not found")
}

// DeleteInstance removes an instance.
func (t *Tx) DeleteInstance(project, name string) error {
	_, err := t.exec(`DELETE FROM instances WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, name, project)
	return err
}

func mustAffect(res sql.Result, msg string) error {
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errdefs.NotFoundf("%s", msg)
	}
	return nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilDevices(m Devices) Devices {
	if m == nil {
		return Devices{}
	}
	return m
}

func nonNilList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

var _ = fmt.Sprintf
