import SpiritCore

/// A service file is read by SpiritCore's `ConfigFile` (the strict TOML
/// subset that keeps each value's line), which Nexus's layout file shares;
/// these names keep the supervisor's code and tests as they were written.
public typealias ServiceFile = ConfigFile

/// A service file that cannot be used: `<file>:<line>: <field>: <what is wrong>`.
public typealias DefinitionError = ConfigError
