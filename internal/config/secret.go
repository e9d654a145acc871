package config

// Redact returns cfg with every set Secret key replaced by
// SecretPlaceholder, the only form in which secrets leave the daemon.
func (s *Schema) Redact(cfg map[string]string) map[string]string {
	out := make(map[string]string, len(cfg))
	for k, v := range cfg {
		if decl, ok := s.keys[k]; ok && decl.Secret && v != "" {
			v = SecretPlaceholder
		}
		out[k] = v
	}
	return out
}

// KeepSecrets returns next with every Secret key that next sets to
// SecretPlaceholder restored to its value in cur: a client that read the
// redacted config and writes it back keeps the stored secret. It also
// reports the secret keys whose values are new (plain text to be hashed).
func (s *Schema) KeepSecrets(cur, next map[string]string) (map[string]string, []string) {
	out := make(map[string]string, len(next))
	var changed []string
	for k, v := range next {
		if decl, ok := s.keys[k]; ok && decl.Secret && v != "" {
			switch {
			case v == SecretPlaceholder && cur[k] != "":
				v = cur[k]
			case v != cur[k]:
				changed = append(changed, k)
			}
		}
		out[k] = v
	}
	return out, changed
}
