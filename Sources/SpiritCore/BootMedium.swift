/// What this boot came from, recorded by the boot worker in
/// /run/spirit/boot-medium.json once the root is built: the running system
/// has let its medium go by then (everything is in RAM), and `spirit
/// persist` needs to find it again to write to it.
public struct BootMedium: Sendable, Equatable {
    /// The cascade's source: usb, parasite, http, nodus.
    public var source: String
    /// Where the image was found, as the console said it.
    public var origin: String
    /// The block device and its filesystem, for a medium that is a disk.
    public var device: String?
    /// The kernel's name for the filesystem: ext4, vfat, iso9660, ntfs.
    public var fstype: String?
    public var label: String?
    /// The filesystem's UUID (libblkid's): the device's name may change
    /// (a stick plugged into another port), the UUID does not.
    public var uuid: String?
    /// The folder of the media files on the filesystem: "" for its root
    /// (a CROM_SPIRIT stick), "CromSpirit" on the parasite's NTFS volume.
    public var directory: String
    /// The slot folder under `directory` (`a`, `b`) on a stick made by
    /// `make stick`: `crom.slot=`. Nil: the media files are in `directory`.
    public var slot: String?

    public init(source: String, origin: String, device: String? = nil, fstype: String? = nil, label: String? = nil,
                uuid: String? = nil, directory: String = "", slot: String? = nil) {
        self.slot = slot
        self.source = source
        self.origin = origin
        self.device = device
        self.fstype = fstype
        self.label = label
        self.uuid = uuid
        self.directory = directory
    }

    public var json: String {
        var members = ["\"source\":" + jsonString(source), "\"origin\":" + jsonString(origin)]
        for (key, value) in [("device", device), ("fstype", fstype), ("label", label), ("uuid", uuid)] {
            if let value { members.append("\"\(key)\":" + jsonString(value)) }
        }
        members.append("\"directory\":" + jsonString(directory))
        if let slot { members.append("\"slot\":" + jsonString(slot)) }
        return "{" + members.joined(separator: ",") + "}\n"
    }

    public init(json bytes: [UInt8]) throws(SpiritError) {
        let document: JSONValue
        do {
            document = try JSONReader.parse(bytes)
        } catch {
            throw SpiritError("not a boot medium record: \(error)")
        }
        guard let source = document["source"]?.string, let origin = document["origin"]?.string else {
            throw SpiritError("not a boot medium record: no source and origin")
        }
        self.init(source: source, origin: origin, device: document["device"]?.string, fstype: document["fstype"]?.string,
                  label: document["label"]?.string, uuid: document["uuid"]?.string,
                  directory: document["directory"]?.string ?? "", slot: document["slot"]?.string)
    }

    /// `/dev/vda (ext4, CROM_SPIRIT, UUID 1234-ABCD)`, or the origin for a
    /// medium that is not a disk.
    public var description: String {
        guard let device else { return origin }
        let details = [fstype, label, uuid.map { "UUID " + $0 }].compactMap { $0 }
        return details.isEmpty ? device : "\(device) (\(details.joined(separator: ", ")))"
    }
}
