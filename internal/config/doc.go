// Package config is ephemera's YAML configuration: the schema, strict
// decoding that names the offending key, defaults, validation, and secrets
// read from files or environment variables.
//
// Every default lives in [Default]; the zero value of any field means
// "use the default" unless the field's comment says otherwise.
package config
