package authz

// Entitlements of the container feature.
const (
	// Creating objects inside a project (instances, images, profiles).
	CanCreateInstances Entitlement = "can_create_instances"
	CanCreateImages    Entitlement = "can_create_images"
	CanCreateProfiles  Entitlement = "can_create_profiles"
	// CanExec runs commands in, and transfers files to and from, an instance.
	CanExec Entitlement = "can_exec"
	// CanUpdateState starts, stops and freezes an instance.
	CanUpdateState Entitlement = "can_update_state"
)

// Entity types of the container feature. Instances, images, aliases and
// profiles are project-scoped: a confined identity may do anything to
// them inside its projects (the delegation floor is enforced on their
// config by the instance layer). Storage pools are server-level.
const (
	Instance    EntityType = "instance"
	Image       EntityType = "image"
	ImageAlias  EntityType = "image_alias"
	Profile     EntityType = "profile"
	StoragePool EntityType = "storage_pool"
)
