// Package artifact is stella's artifact model: the artifact kinds and their
// artifactType, the media types and annotations stella writes, and the pack
// artifact itself.
//
// Every stella object that moves (a pack, an approval request or response,
// evidence, a signature) is one OCI image manifest (image-spec v1.1) with
// artifactType set. A pack is a config blob (PackConfig, RFC 8785 canonical
// JSON) and one plain layer per file, titled with its path, so `oras pull`
// of a pack gives back the pack folder. Build derives a pack's artifact
// deterministically (the same folder gives the same digest on every machine);
// PackFS presents a pack artifact held in any content.Fetcher as a file
// system, so the pack model loads from it exactly as from a folder.
//
// How artifacts are carried is not this package's job: bundle writes and
// reads bundle files, cache stores artifacts, mirror moves them to and from
// registries. docs/bundle-format.md is the normative description of both.
package artifact
