import Foundation
import ShardDB

/// The escaping used by TSV import/export: `\t`, `\n`, `\r`, `\\` and `\xHH`
/// for other control bytes and bytes that are not valid UTF-8, so any key or
/// value fits on one line.
enum TSV {
    static func escape(_ bytes: some Collection<UInt8>) -> String {
        let array = Array(bytes)
        let valid = String(validating: array, as: UTF8.self) != nil
        var out = [UInt8]()
        out.reserveCapacity(array.count)
        let hex = Array("0123456789abcdef".utf8)
        for b in array {
            switch b {
            case 0x09: out += [0x5C, 0x74]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x5C: out += [0x5C, 0x5C]
            case _ where b < 0x20 || b == 0x7F || (!valid && b >= 0x80):
                out += [0x5C, 0x78, hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unescape(_ text: Substring) throws -> [UInt8] {
        let bytes = Array(text.utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            guard b == 0x5C else { out.append(b); i += 1; continue }
            guard i + 1 < bytes.count else { throw TextFormatError("dangling backslash") }
            switch bytes[i + 1] {
            case 0x74: out.append(0x09); i += 2
            case 0x6E: out.append(0x0A); i += 2
            case 0x72: out.append(0x0D); i += 2
            case 0x5C: out.append(0x5C); i += 2
            case 0x78:
                guard i + 3 < bytes.count, let v = ByteText.unhex(String(decoding: bytes[(i + 2)...(i + 3)], as: UTF8.self)) else {
                    throw TextFormatError("bad \\x escape")
                }
                out += v; i += 4
            default: throw TextFormatError("unknown escape \\\(Character(UnicodeScalar(bytes[i + 1])))")
            }
        }
        return out
    }
}

/// One JSON line of import/export: text fields when the bytes are UTF-8, hex fields otherwise.
struct JSONRecord: Codable {
    var key: String?
    var keyHex: String?
    var value: String?
    var valueHex: String?
    /// Absolute expiry, milliseconds since the Unix epoch (export).
    var expiresAt: Int64?
    /// Seconds to live (import).
    var ttl: Int64?
    /// Write time, milliseconds since the Unix epoch, of a stamped value (export;
    /// import restores it, so last-write-wins merges still order the value).
    var writtenAt: Int64?
    var shard: Int?

    init(key: [UInt8], value: [UInt8], expiresAt: Int64?, writtenAt: Int64? = nil, shard: Int?) {
        if let text = String(validating: key, as: UTF8.self) { self.key = text } else { keyHex = ByteText.hex(key) }
        if let text = String(validating: value, as: UTF8.self) { self.value = text } else { valueHex = ByteText.hex(value) }
        self.expiresAt = expiresAt
        self.writtenAt = writtenAt
        self.shard = shard
    }

    func decodedKey() throws -> [UInt8] {
        guard key == nil || keyHex == nil else { throw TextFormatError("both \"key\" and \"keyHex\": give one") }
        if let key { return Array(key.utf8) }
        if let keyHex { guard let bytes = ByteText.unhex(keyHex) else { throw TextFormatError("keyHex is not hex") }; return bytes }
        throw TextFormatError("missing \"key\"")
    }

    func decodedValue() throws -> [UInt8] {
        guard value == nil || valueHex == nil else { throw TextFormatError("both \"value\" and \"valueHex\": give one") }
        if let value { return Array(value.utf8) }
        if let valueHex { guard let bytes = ByteText.unhex(valueHex) else { throw TextFormatError("valueHex is not hex") }; return bytes }
        throw TextFormatError("missing \"value\"")
    }
}

/// The names of a JSON object's own fields (not those of nested objects), in order,
/// escapes decoded. For a line the decoder accepted: JSONDecoder quietly keeps one
/// of two fields with the same name, and which one is not ours to guess.
enum JSONObjectFields {
    static func names(in line: String) -> [String] {
        let bytes = Array(line.utf8)
        var names: [String] = []
        var depth = 0
        var expectingName = false
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "\""):
                var end = i + 1
                while end < bytes.count && bytes[end] != UInt8(ascii: "\"") { end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectingName {
                    let raw = Array(bytes[i...min(end, bytes.count - 1)])
                    if raw.contains(UInt8(ascii: "\\")),
                       let decoded = try? JSONSerialization.jsonObject(with: Data(raw), options: .fragmentsAllowed) as? String {
                        names.append(decoded)
                    } else {
                        names.append(String(decoding: raw.dropFirst().dropLast(), as: UTF8.self))
                    }
                    expectingName = false
                }
                i = end
            case UInt8(ascii: "{"):
                depth += 1
                expectingName = depth == 1
            case UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                expectingName = depth == 1
            default:
                break
            }
            i += 1
        }
        return names
    }

    /// The first field name that occurs twice, if any.
    static func repeated(in line: String) -> String? {
        var seen = Set<String>()
        return names(in: line).first { !seen.insert($0).inserted }
    }
}

struct TextFormatError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
