// CompactList behaves as an array through every size change, and copies stay independent.
import Testing

@testable import Core

@Suite struct CompactListTests {
    @Test func behavesAsAnArrayThroughEverySize() {
        var list = CompactList<String>()
        var model: [String] = []
        #expect(list.isEmpty)
        // Grow through none, one, many; shrink back; insert at the front and in the middle.
        let steps: [(inout CompactList<String>, inout [String]) -> Void] = [
            {
                $0.append("a"); $1.append("a")
            },
            {
                $0.append("b"); $1.append("b")
            },
            {
                $0.insert("c", at: 0); $1.insert("c", at: 0)
            },
            {
                $0.insert("d", at: 2); $1.insert("d", at: 2)
            },
            {
                _ = $0.remove(at: 1); _ = $1.remove(at: 1)
            },
            {
                $0.removeFirst(2); $1.removeFirst(2)
            },
            {
                $0.append("h"); $1.append("h")
            },
            {
                $0.removeAll { $0 == "b" }; $1.removeAll { $0 == "b" }
            },
            {
                _ = $0.removeFirst(); _ = $1.removeFirst()
            },
            {
                $0.append(contentsOf: ["e", "f", "g"]); $1.append(contentsOf: ["e", "f", "g"])
            },
            {
                $0.removeAll(); $1.removeAll()
            },
        ]
        for (index, step) in steps.enumerated() {
            step(&list, &model)
            #expect(Array(list) == model, "after step \(index)")
            #expect(list.count == model.count && list.first == model.first && list.last == model.last)
            #expect(list.firstIndex(of: "b") == model.firstIndex(of: "b"))
        }
    }

    @Test func copiesAreIndependent() {
        var one = CompactList<Int>()
        one.append(contentsOf: [1, 2, 3])
        var other = one
        other.append(4)
        one.replaceSubrange(0..<1, with: [9])
        #expect(Array(one) == [9, 2, 3] && Array(other) == [1, 2, 3, 4])
        var single = CompactList<Int>()
        single.append(7)
        let kept = single
        single.removeAll()
        #expect(Array(kept) == [7] && single.isEmpty)
    }
}
