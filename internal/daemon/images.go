package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/authz"
	"github.com/moat/moat/internal/config"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/filter"
	"github.com/moat/moat/internal/image"
	"github.com/moat/moat/internal/operation"
	"github.com/moat/moat/internal/response"
	"github.com/moat/moat/internal/route"
	"github.com/moat/moat/internal/store"
)

// MaxImageSize bounds an image upload.
const MaxImageSize = 16 << 30

func imageURL(project, fp string) string {
	u := "/1.0/images/" + fp
	if project != "default" {
		u += "?project=" + url.QueryEscape(project)
	}
	return u
}

func imageEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.Image, Name: r.Var("fingerprint"), Project: r.Project}
}

func aliasEntity(r *route.Request) authz.Entity {
	return authz.Entity{Type: authz.ImageAlias, Name: r.Var("name"), Project: r.Project}
}

func (d *Daemon) imageEndpoints() []*route.Endpoint {
	proj := requestProjectEntity
	return []*route.Endpoint{
		// Untrusted callers see public images only (the handlers filter).
		{Path: "/1.0/images",
			Get:  &route.Action{Handler: d.getImages, Entitlement: authz.CanView, Entity: proj, AllowUntrusted: true, AllProjects: true},
			Post: &route.Action{Handler: d.createImage, Entitlement: authz.CanCreateImages, Entity: proj, MaxBody: MaxImageSize},
		},
		{Path: "/1.0/images/aliases",
			Get:  &route.Action{Handler: d.getImageAliases, Entitlement: authz.CanView, Entity: proj},
			Post: &route.Action{Handler: d.createImageAlias, Entitlement: authz.CanCreateImages, Entity: proj},
		},
		{Path: "/1.0/images/aliases/{name}",
			Get:    &route.Action{Handler: d.getImageAlias, Entitlement: authz.CanView, Entity: aliasEntity, AllowUntrusted: true},
			Put:    &route.Action{Handler: d.putImageAlias, Entitlement: authz.CanEdit, Entity: aliasEntity},
			Patch:  &route.Action{Handler: d.patchImageAlias, Entitlement: authz.CanEdit, Entity: aliasEntity},
			Post:   &route.Action{Handler: d.renameImageAlias, Entitlement: authz.CanEdit, Entity: aliasEntity},
			Delete: &route.Action{Handler: d.deleteImageAlias, Entitlement: authz.CanDelete, Entity: aliasEntity},
		},
		{Path: "/1.0/images/{fingerprint}",
			Get:    &route.Action{Handler: d.getImage, Entitlement: authz.CanView, Entity: imageEntity, AllowUntrusted: true},
			Put:    &route.Action{Handler: d.putImage, Entitlement: authz.CanEdit, Entity: imageEntity},
			Patch:  &route.Action{Handler: d.patchImage, Entitlement: authz.CanEdit, Entity: imageEntity},
			Delete: &route.Action{Handler: d.deleteImage, Entitlement: authz.CanDelete, Entity: imageEntity},
		},
	}
}

// imageProject is the project whose images a request uses.
func (d *Daemon) imageProject(project string) (string, error) {
	var ip string
	err := d.store.View(context.Background(), func(tx *store.Tx) error {
		var err error
		ip, err = featureProject(tx, project, "images")
		return err
	})
	return ip, err
}

func (d *Daemon) renderImage(tx *store.Tx, m store.Image) (api.Image, error) {
	aliases, err := tx.ImageAliases(m.Project)
	if err != nil {
		return api.Image{}, err
	}
	out := api.Image{
		ImagePut: api.ImagePut{AutoUpdate: m.AutoUpdate, Properties: m.Properties, Public: m.Public,
			ExpiresAt: time.Unix(0, 0).UTC(), Profiles: []string{"default"}},
		Aliases: []api.ImageAliasesEntry{}, Architecture: m.Architecture, Filename: m.Filename,
		Fingerprint: m.Fingerprint, Size: m.Size, Type: m.Type,
		CreatedAt: m.CreatedAt, UploadedAt: m.UploadedAt, LastUsedAt: m.LastUsedAt,
	}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	for _, a := range aliases {
		if a.Fingerprint == m.Fingerprint {
			out.Aliases = append(out.Aliases, api.ImageAliasesEntry{Name: a.Name, Description: a.Description})
		}
	}
	return out, nil
}

func (d *Daemon) getImages(r *route.Request) response.Response {
	flt, err := filter.Parse(r.Query("filter"))
	if err != nil {
		return response.Error(err)
	}
	trusted := r.Identity.Trusted()
	project := ""
	if !r.AllProjects {
		ip, err := d.imageProject(r.Project)
		if err != nil {
			return response.Error(err)
		}
		project = ip
	}
	out := []api.Image{}
	urls := []string{}
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		list, err := tx.Images(project)
		if err != nil {
			return err
		}
		for _, m := range list {
			if !trusted && !m.Public || trusted && !authz.CanViewProject(r.Identity, m.Project) {
				continue
			}
			ai, err := d.renderImage(tx, m)
			if err != nil {
				return err
			}
			// The filter runs on what the caller may see, never before.
			ok, err := flt.Match(ai)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			out = append(out, ai)
			urls = append(urls, imageURL(m.Project, m.Fingerprint))
		}
		return nil
	})
	if err != nil {
		return response.Error(err)
	}
	if r.Recursion() > 0 {
		return response.Sync(out, nil)
	}
	return response.Sync(urls, nil)
}

func (d *Daemon) lookupImage(r *route.Request) (store.Image, error) {
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return store.Image{}, err
	}
	var m store.Image
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		m, err = tx.Image(ip, r.Var("fingerprint"))
		return err
	})
	if err == nil && !r.Identity.Trusted() && !m.Public {
		return store.Image{}, errdefs.NotFoundf("Image not found")
	}
	return m, err
}

func (d *Daemon) getImage(r *route.Request) response.Response {
	m, err := d.lookupImage(r)
	if err != nil {
		return response.Error(err)
	}
	var out api.Image
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		out, err = d.renderImage(tx, m)
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	return response.Sync(out, out.ImagePut)
}

// createImage accepts LXD's upload forms: a unified tarball as the raw
// body, or a multipart form with "metadata" and "rootfs" parts (split).
func (d *Daemon) createImage(r *route.Request) response.Response {
	ct, params, _ := mime.ParseMediaType(r.HTTP.Header.Get("Content-Type"))
	if ct == "application/json" {
		return response.Error(errdefs.NotImplementedf("Creating images from a source (remote server, instance, URL) is not supported: upload a tarball"))
	}
	project, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	public, _ := config.ParseBool(r.HTTP.Header.Get("X-LXD-public"))
	filename := r.HTTP.Header.Get("X-LXD-filename")
	if strings.ContainsAny(filename, "/\x00") || len(filename) > 255 {
		return response.Error(errdefs.Invalidf("Invalid X-LXD-filename"))
	}
	props := map[string]string{}
	if p := r.HTTP.Header.Get("X-LXD-properties"); p != "" {
		q, err := url.ParseQuery(p)
		if err != nil {
			return response.Error(errdefs.Invalidf("Invalid X-LXD-properties: %v", err))
		}
		for k := range q {
			props[k] = q.Get(k)
		}
		if err := checkImageProperties(props, "X-LXD-properties"); err != nil {
			return response.Error(err)
		}
	}
	// The row is written by the image store once the files are in place
	// and under its lock, so that no prune runs between the two; a
	// refused row takes the files this upload placed with it.
	register := func(imp *image.Imported) error {
		if err := checkImageProperties(imp.Metadata.Properties, "metadata.yaml"); err != nil {
			return err
		}
		for k, v := range imp.Metadata.Properties {
			if _, set := props[k]; !set {
				props[k] = v
			}
		}
		m := store.Image{
			Project: project, Fingerprint: imp.Fingerprint, Filename: filename, Size: imp.Size, Public: public,
			Architecture: imp.Metadata.Architecture, Type: "container", Properties: props,
			CreatedAt: time.Unix(imp.Metadata.CreationDate, 0).UTC(), UploadedAt: time.Now().UTC(),
		}
		return d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.CreateImage(m) })
	}
	var imp *image.Imported
	progress := func(n int64) {}
	// The body is read here, in the request: an operation outliving the
	// request could not read it. The client waits on the operation.
	if ct == "multipart/form-data" {
		imp, err = d.importSplit(r, params["boundary"], progress, register)
	} else {
		imp, err = d.ct.images.ImportUnified(r.HTTP.Body, progress, register)
	}
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return response.Error(errdefs.TooLargef("Image is larger than %d bytes", maxErr.Limit))
		}
		if errors.Is(err, image.ErrInvalid) {
			return response.Error(errdefs.Invalidf("%v", err))
		}
		return response.Error(err)
	}
	requestor := r.Identity.Requestor()
	d.bus.Lifecycle("image-created", imageURL(project, imp.Fingerprint), project, requestor, nil)
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: "Updating images", Project: project,
		Resources: map[string][]string{"images": {imageURL(project, imp.Fingerprint)}}, Creator: r.Identity,
		Metadata: map[string]any{"fingerprint": imp.Fingerprint, "size": imp.Size},
		Run:      func(context.Context, *operation.Operation) error { return nil },
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

// maxSplitMetadata bounds the metadata part of a split upload, which is
// held in memory (a metadata tarball is a few KiB).
const maxSplitMetadata = 64 << 20

func (d *Daemon) importSplit(r *route.Request, boundary string, progress image.Progress, register image.Register) (*image.Imported, error) {
	if boundary == "" {
		return nil, errdefs.Invalidf("Multipart upload without a boundary")
	}
	mr := multipart.NewReader(r.HTTP.Body, boundary)
	meta, err := mr.NextPart()
	if err != nil || meta.FormName() != "metadata" {
		return nil, errdefs.Invalidf("A split image upload needs a \"metadata\" part first")
	}
	// The metadata tarball is small: buffer it so the rootfs part can be
	// reached.
	buf, err := io.ReadAll(io.LimitReader(meta, maxSplitMetadata+1))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, err
		}
		return nil, errdefs.Invalidf("Reading the metadata part: %v", err)
	}
	if len(buf) > maxSplitMetadata {
		return nil, errdefs.TooLargef("The \"metadata\" part is larger than %d MiB", maxSplitMetadata>>20)
	}
	rootfs, err := mr.NextPart()
	if err != nil || (rootfs.FormName() != "rootfs") {
		return nil, errdefs.Invalidf("A split image upload needs a \"rootfs\" part after \"metadata\"")
	}
	return d.ct.images.ImportSplit(bytes.NewReader(buf), rootfs, progress, register)
}

// pruneImage removes image files no project references any more, once
// no instance uses them either: an image's rootfs is the lower layer of
// every container made from it, so deleting the image only hides it from
// the API until its last container is deleted (removeInstance calls this
// again then; at start, initContainers prunes what a crash left).
func (d *Daemon) pruneImage(fp string) {
	if fp == "" {
		return
	}
	_ = d.ct.images.RemoveUnused(fp, func() (bool, error) {
		used := true
		err := d.store.View(context.Background(), func(tx *store.Tx) error {
			n, err := tx.ImageRefs(fp)
			if err != nil || n > 0 {
				return err
			}
			ins, err := tx.Instances("")
			if err != nil {
				return err
			}
			used = slices.ContainsFunc(ins, func(in store.Instance) bool { return in.Config["volatile.base_image"] == fp })
			return nil
		})
		return used, err
	})
}

// checkImageProperties refuses property names LXD's clients cannot
// round-trip (empty, or with a NUL or newline); where names the source.
func checkImageProperties(props map[string]string, where string) error {
	for k := range props {
		if k == "" || strings.ContainsAny(k, "\x00\n") {
			return errdefs.Invalidf("Invalid image property name %q in %s", k, where)
		}
	}
	return nil
}

type imagePatch struct {
	AutoUpdate *bool             `json:"auto_update"`
	Properties map[string]string `json:"properties"`
	Public     *bool             `json:"public"`
}

func (d *Daemon) putImage(r *route.Request) response.Response {
	var req api.ImagePut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateImage(r, func(m *store.Image) {
		m.AutoUpdate, m.Public, m.Properties = req.AutoUpdate, req.Public, req.Properties
	})
}

func (d *Daemon) patchImage(r *route.Request) response.Response {
	var req imagePatch
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateImage(r, func(m *store.Image) {
		if req.AutoUpdate != nil {
			m.AutoUpdate = *req.AutoUpdate
		}
		if req.Public != nil {
			m.Public = *req.Public
		}
		for k, v := range req.Properties {
			if m.Properties == nil {
				m.Properties = map[string]string{}
			}
			m.Properties[k] = v
		}
	})
}

// updateImage reads, checks If-Match against, changes and writes the
// image in one write transaction, so a concurrent change is neither lost
// nor checked against a stale copy.
func (d *Daemon) updateImage(r *route.Request, change func(*store.Image)) response.Response {
	found, err := d.lookupImage(r)
	if err != nil {
		return response.Error(err)
	}
	var m store.Image
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		var err error
		if m, err = tx.Image(found.Project, found.Fingerprint); err != nil {
			return err
		}
		cur, err := d.renderImage(tx, m)
		if err != nil {
			return err
		}
		if err := r.CheckETag(cur.ImagePut); err != nil {
			return err
		}
		change(&m)
		if err := checkImageProperties(m.Properties, "properties"); err != nil {
			return err
		}
		return tx.UpdateImage(m)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("image-updated", imageURL(m.Project, m.Fingerprint), m.Project, r.Identity.Requestor(), nil)
	return response.EmptySync()
}

func (d *Daemon) deleteImage(r *route.Request) response.Response {
	m, err := d.lookupImage(r)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error { return tx.DeleteImage(m.Project, m.Fingerprint) })
	if err != nil {
		return response.Error(err)
	}
	d.pruneImage(m.Fingerprint)
	requestor := r.Identity.Requestor()
	d.bus.Lifecycle("image-deleted", imageURL(m.Project, m.Fingerprint), m.Project, requestor, nil)
	op, err := d.ops.Create(operation.Args{
		Class: api.OperationClassTask, Description: "Deleting image", Project: m.Project,
		Resources: map[string][]string{"images": {imageURL(m.Project, m.Fingerprint)}}, Creator: r.Identity,
		Run: func(context.Context, *operation.Operation) error { return nil },
	})
	if err != nil {
		return response.Error(err)
	}
	op.Start()
	return response.Async(op.Render(r.Identity))
}

func aliasURL(project, name string) string {
	u := "/1.0/images/aliases/" + url.PathEscape(name)
	if project != "default" {
		u += "?project=" + url.QueryEscape(project)
	}
	return u
}

func validAliasName(n string) error {
	if n == "" || len(n) > 255 || strings.ContainsAny(n, "/\x00\n") || strings.HasPrefix(n, " ") {
		return errdefs.Invalidf("Invalid alias name %q", n)
	}
	return nil
}

func (d *Daemon) getImageAliases(r *route.Request) response.Response {
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	var list []store.ImageAlias
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		list, err = tx.ImageAliases(ip)
		return err
	})
	if err != nil {
		return response.Error(err)
	}
	if r.Recursion() > 0 {
		out := []api.ImageAlias{}
		for _, a := range list {
			out = append(out, api.ImageAlias{Name: a.Name, Description: a.Description, Target: a.Fingerprint, Type: "container"})
		}
		return response.Sync(out, nil)
	}
	urls := []string{}
	for _, a := range list {
		urls = append(urls, aliasURL(ip, a.Name))
	}
	return response.Sync(urls, nil)
}

func (d *Daemon) getImageAlias(r *route.Request) response.Response {
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	var a store.ImageAlias
	var m store.Image
	err = d.store.View(context.Background(), func(tx *store.Tx) error {
		if a, err = tx.ImageAlias(ip, r.Var("name")); err != nil {
			return err
		}
		m, err = tx.Image(ip, a.Fingerprint)
		return err
	})
	if err == nil && !r.Identity.Trusted() && !m.Public {
		err = errdefs.NotFoundf("Image alias not found")
	}
	if err != nil {
		return response.Error(err)
	}
	out := api.ImageAlias{Name: a.Name, Description: a.Description, Target: a.Fingerprint, Type: "container"}
	return response.Sync(out, api.ImageAliasesEntryPut{Description: a.Description, Target: a.Fingerprint})
}

func (d *Daemon) createImageAlias(r *route.Request) response.Response {
	var req api.ImageAliasesPost
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if err := validAliasName(req.Name); err != nil {
		return response.Error(err)
	}
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		m, err := tx.Image(ip, req.Target)
		if err != nil {
			return errdefs.NotFoundf("Image %q not found", req.Target)
		}
		return tx.CreateImageAlias(store.ImageAlias{Project: ip, Name: req.Name, Fingerprint: m.Fingerprint, Description: req.Description})
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("image-alias-created", aliasURL(ip, req.Name), ip, r.Identity.Requestor(), map[string]any{"target": req.Target})
	return response.Created(aliasURL(ip, req.Name))
}

type aliasPatch struct {
	Description *string `json:"description"`
	Target      *string `json:"target"`
}

func (d *Daemon) putImageAlias(r *route.Request) response.Response {
	var req api.ImageAliasesEntryPut
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateAlias(r, aliasPatch{Description: &req.Description, Target: &req.Target})
}

func (d *Daemon) patchImageAlias(r *route.Request) response.Response {
	var req aliasPatch
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	return d.updateAlias(r, req)
}

func (d *Daemon) updateAlias(r *route.Request, p aliasPatch) response.Response {
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		a, err := tx.ImageAlias(ip, r.Var("name"))
		if err != nil {
			return err
		}
		if err := r.CheckETag(api.ImageAliasesEntryPut{Description: a.Description, Target: a.Fingerprint}); err != nil {
			return err
		}
		if p.Description != nil {
			a.Description = *p.Description
		}
		if p.Target != nil {
			m, err := tx.Image(ip, *p.Target)
			if err != nil {
				return errdefs.NotFoundf("Image %q not found", *p.Target)
			}
			a.Fingerprint = m.Fingerprint
		}
		return tx.UpdateImageAlias(a)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("image-alias-updated", aliasURL(ip, r.Var("name")), ip, r.Identity.Requestor(), nil)
	return response.EmptySync()
}

func (d *Daemon) renameImageAlias(r *route.Request) response.Response {
	var req struct {
		Name string `json:"name"`
	}
	if err := r.DecodeJSON(&req); err != nil {
		return response.Error(err)
	}
	if err := validAliasName(req.Name); err != nil {
		return response.Error(err)
	}
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.ImageAlias(ip, r.Var("name")); err != nil {
			return err
		}
		return tx.RenameImageAlias(ip, r.Var("name"), req.Name)
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("image-alias-renamed", aliasURL(ip, req.Name), ip, r.Identity.Requestor(), map[string]any{"old_name": r.Var("name")})
	return response.Created(aliasURL(ip, req.Name))
}

func (d *Daemon) deleteImageAlias(r *route.Request) response.Response {
	ip, err := d.imageProject(r.Project)
	if err != nil {
		return response.Error(err)
	}
	err = d.store.Update(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.ImageAlias(ip, r.Var("name")); err != nil {
			return err
		}
		return tx.DeleteImageAlias(ip, r.Var("name"))
	})
	if err != nil {
		return response.Error(err)
	}
	d.bus.Lifecycle("image-alias-deleted", aliasURL(ip, r.Var("name")), ip, r.Identity.Requestor(), nil)
	return response.EmptySync()
}
