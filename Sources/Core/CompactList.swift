// A list for the many short lists of the domain: most users have one device, one pending challenge, one recent
// creation; most devices have one queued challenge. Zero or one element costs no allocation (an array costs 48 to
// 64 bytes of heap each, which is a quarter of a pending challenge's memory).

public struct CompactList<Element: Sendable>: RandomAccessCollection, RangeReplaceableCollection {
    private enum Storage: Sendable {
        case empty
        case one(Element)
        case many([Element])
    }

    private var storage = Storage.empty

    public init() {}

    public var startIndex: Int { 0 }

    public var endIndex: Int {
        switch storage {
        case .empty: 0
        case .one: 1
        case .many(let elements): elements.count
        }
    }

    public subscript(position: Int) -> Element {
        switch storage {
        case .one(let element):
            precondition(position == 0, "index out of range")
            return element
        case .many(let elements): return elements[position]
        case .empty: preconditionFailure("index out of range")
        }
    }

    public mutating func replaceSubrange<C: Collection>(_ subrange: Range<Int>, with newElements: C)
    where C.Element == Element {
        if case .empty = storage, newElements.count == 1, let only = newElements.first {
            storage = .one(only)
            return
        }
        var elements: [Element]
        switch storage {
        case .empty: elements = []
        case .one(let element): elements = [element]
        case .many(let existing): elements = existing
        }
        // Let go of the stored array first, so that `elements` is its only owner and changes in place.
        storage = .empty
        elements.replaceSubrange(subrange, with: newElements)
        switch elements.count {
        case 0: storage = .empty
        case 1: storage = .one(elements[0])
        default: storage = .many(elements)
        }
    }
}

extension CompactList {
    /// Changes one element in place.
    public mutating func modify(at index: Int, _ change: (inout Element) -> Void) {
        var element = self[index]
        change(&element)
        replaceSubrange(index..<index + 1, with: CollectionOfOne(element))
    }
}

extension CompactList: Equatable where Element: Equatable {
    public static func == (lhs: CompactList, rhs: CompactList) -> Bool { lhs.elementsEqual(rhs) }
}

extension CompactList: Sendable {}
