// The cost of one point operation, engine vs raw C API, two ways:
//
//   PointOpsProfile MODE COUNT
//     MODE: put-engine | put-raw | get-engine | get-raw | zc-engine | zc-raw | none
//     COUNT operations of one kind; run under callgrind at COUNT and with `none`,
//     the difference divided by COUNT is instructions per operation, repeatable
//     whatever else the machine does (Benchmarks/point-ops-cost does this).
//
//   PointOpsProfile compare ROUNDS [--ordered-load]
//     Wall clock: for each kind, ROUNDS rounds of 1000 engine operations and
//     1000 raw ones back to back (the order swaps every round); prints the
//     median nanoseconds per operation of each and their ratio. Alternating
//     in small rounds keeps drift and neighbours' load out of the ratio.
//
// Both stores are loaded with the same 100,000 keys first, so the load cancels
// out of the difference; the operations visit the keys in the same pseudo-random
// order as the PointOps suite (`keyIndex`).
import Foundation
import PointOpsSupport
import ShardDB

let arguments = CommandLine.arguments
guard (3...4).contains(arguments.count), let count = Int(arguments[2]), count >= 0,
      arguments.count == 3 || arguments[3] == "--ordered-load" else {
    FileHandle.standardError.write(Data("usage: PointOpsProfile MODE COUNT [--ordered-load]\n".utf8))
    exit(2)
}
/// Median ns/op of engine and raw batches of 1000, alternating; see the header.
func compare(rounds: Int) {
    typealias Batch = (inout Int) -> Void
    let batch = 1000
    let kinds: [(String, Batch, Batch)] = [
        ("put", { i in for _ in 0..<batch { try! engine.put(keys[keyIndex(i)], value); i &+= 1 } },
                { i in value.withUnsafeBytes { v in for _ in 0..<batch { keys[keyIndex(i)].withUnsafeBytes { raw.put($0, v) }; i &+= 1 } } }),
        ("get (copying)", { i in for _ in 0..<batch { consume(try! engine.get(keys[keyIndex(i)])?.count ?? 0); i &+= 1 } },
                          { i in for _ in 0..<batch { consume(keys[keyIndex(i)].withUnsafeBytes { raw.get($0) }?.count ?? 0); i &+= 1 } }),
        ("get (zero-copy)", { i in for _ in 0..<batch { consume(try! engine.withValue(forKey: keys[keyIndex(i)]) { $0.count } ?? 0); i &+= 1 } },
                            { i in for _ in 0..<batch { consume(keys[keyIndex(i)].withUnsafeBytes { raw.withPinned($0) { $0.count } } ?? 0); i &+= 1 } }),
    ]
    func time(_ body: Batch, _ i: inout Int) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body(&i)
        return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(batch)
    }
    func median(_ values: [Double]) -> Double { let s = values.sorted(); return s[s.count / 2] }
    print("operation          engine ns/op   raw ns/op   ratio   (median of \(rounds) alternating rounds of \(batch))")
    for (name, engineBatch, rawBatch) in kinds {
        var e: [Double] = [], r: [Double] = [], ei = 0, ri = 0
        for round in 0..<rounds {
            if round % 2 == 0 { e.append(time(engineBatch, &ei)); r.append(time(rawBatch, &ri)) }
            else { r.append(time(rawBatch, &ri)); e.append(time(engineBatch, &ei)) }
        }
        let me = median(e), mr = median(r)
        print(name.padding(toLength: 18, withPad: " ", startingAt: 0)
              + String(format: " %12.0f %11.0f %7.3f", me, mr, me / mr))
    }
}

let stores = try Stores(orderedLoad: arguments.count == 4)
defer { stores.close() }
let engine = stores.engine, raw = stores.raw
var checksum = 0
var i = 0
@inline(never) func consume(_ n: Int) { checksum &+= n }

switch arguments[1] {
case "put-engine":
    for _ in 0..<count { try engine.put(keys[keyIndex(i)], value); i &+= 1 }
case "put-raw":
    value.withUnsafeBytes { v in
        for _ in 0..<count { keys[keyIndex(i)].withUnsafeBytes { raw.put($0, v) }; i &+= 1 }
    }
case "get-engine":
    for _ in 0..<count { consume(try engine.get(keys[keyIndex(i)])?.count ?? 0); i &+= 1 }
case "get-raw":
    for _ in 0..<count { consume(keys[keyIndex(i)].withUnsafeBytes { raw.get($0) }?.count ?? 0); i &+= 1 }
case "zc-engine":
    for _ in 0..<count { consume(try engine.withValue(forKey: keys[keyIndex(i)]) { $0.count } ?? 0); i &+= 1 }
case "zc-raw":
    for _ in 0..<count { consume(keys[keyIndex(i)].withUnsafeBytes { raw.withPinned($0) { $0.count } } ?? 0); i &+= 1 }
case "none":
    break
case "compare":
    compare(rounds: count)
default:
    FileHandle.standardError.write(Data("unknown mode \(arguments[1])\n".utf8))
    exit(2)
}
print(checksum)
