"""The CLI's subcommands: `livekit run` (hands over to the show), `render` (stills and contact sheets through the
engine), `bench` (the stream against its floor) and `devices` (MIDI ports, audio inputs, displays). `livekit.cli`
parses the arguments and dispatches here; shared argument helpers live in `livekit.commands.args`."""
