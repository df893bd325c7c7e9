using System.Buffers;
using System.Runtime.InteropServices;

namespace PgSpec.Proxy;

/// <summary>
/// The receive buffer of one direction of a connection: unread bytes are <c>[Start, End)</c>. It
/// starts small (pooled) and grows only as bytes arrive, never to a length a peer merely declares;
/// a buffer grown for a large message lives outside the garbage-collected heap and is given back
/// to the operating system as soon as the message has gone, so memory follows what is held now.
/// </summary>
internal sealed class ReceiveBuffer : IDisposable
{
    /// <summary>The size every buffer starts with, and shrinks back to.</summary>
    public const int SmallSize = 16 * 1024;

    /// <summary>Buffers up to this size come from the shared array pool; larger ones are mapped memory of their own.</summary>
    private const int PooledLimit = 1024 * 1024;

    private byte[]? _array;
    private LargeBuffer? _large;

    public ReceiveBuffer()
    {
        _array = ArrayPool<byte>.Shared.Rent(SmallSize);
        Memory = _array;
    }

    /// <summary>The whole buffer.</summary>
    public Memory<byte> Memory { get; private set; }

    public Span<byte> Span => Memory.Span;

    public int Capacity => Memory.Length;

    public int Start { get; set; }

    public int End { get; set; }

    public int Unread => End - Start;

    /// <summary>The unread bytes.</summary>
    public Span<byte> UnreadSpan => Memory.Span[Start..End];

    /// <summary>Where the next receive goes.</summary>
    public Memory<byte> Free => Memory[End..];

    /// <summary>
    /// Makes room for the next receive while the message at the front is <paramref name="wireLength"/>
    /// bytes long (0 when its header is not in yet): moves the unread bytes to the front, and when the
    /// buffer is full, doubles it, but never beyond that length. Returns whether the buffer was replaced.
    /// </summary>
    public bool MakeRoom(long wireLength)
    {
        int unread = Unread;
        if (End < Capacity)
        {
            return false;
        }

        if (Start > 0)
        {
            Span.Slice(Start, unread).CopyTo(Span);
            Start = 0;
            End = unread;
            return false;
        }

        // Full of one partial message: grow with what arrives, up to what it says it needs.
        long wanted = Math.Max(2L * Capacity, SmallSize);
        if (wireLength > unread)
        {
            wanted = Math.Min(wanted, wireLength);
        }

        Replace((int)Math.Min(wanted, Array.MaxLength));
        return true;
    }

    /// <summary>
    /// After the front messages have gone: empties the buffer, or moves a small remainder to the
    /// front; a large buffer is given back once what is left fits a small one.
    /// </summary>
    public void Settle(long frontWireLength)
    {
        if (Unread == 0)
        {
            Start = End = 0;
        }

        if (Capacity > SmallSize && Unread <= SmallSize && frontWireLength <= SmallSize)
        {
            Replace(SmallSize);
        }
        else if (Start > 0 && Capacity - Start < frontWireLength)
        {
            int unread = Unread;
            Span.Slice(Start, unread).CopyTo(Span);
            Start = 0;
            End = unread;
        }
    }

    /// <summary>Moves the unread bytes into a new buffer of <paramref name="size"/> bytes and gives the old one back.</summary>
    private void Replace(int size)
    {
        int unread = Unread;
        if (_large is not null && size > PooledLimit && Start == 0 && _large.TryResize(size))
        {
            // Mapped memory grows in place (or moves without a copy): no second copy of a large message.
            Memory = _large.Memory;
            return;
        }

        byte[]? array = null;
        LargeBuffer? large = null;
        Memory<byte> memory;
        if (size <= PooledLimit)
        {
            array = ArrayPool<byte>.Shared.Rent(size);
            memory = array;
        }
        else
        {
            large = LargeBuffer.Allocate(size);
            memory = large.Memory;
        }

        Span.Slice(Start, unread).CopyTo(memory.Span);
        Release();
        _array = array;
        _large = large;
        Memory = memory;
        Start = 0;
        End = unread;
    }

    private void Release()
    {
        if (_array is not null)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = null;
        }

        ((IDisposable?)_large)?.Dispose();
        _large = null;
        Memory = default;
    }

    public void Dispose()
    {
        Release();
        Start = End = 0;
    }
}

/// <summary>
/// Memory for one large message, outside the garbage-collected heap: mapped pages of its own on
/// Linux (unmapped, so returned to the system, when disposed), native memory elsewhere.
/// </summary>
internal sealed unsafe partial class LargeBuffer : MemoryManager<byte>
{
    private const int ProtRead = 1;
    private const int ProtWrite = 2;
    private const int MapPrivate = 0x02;
    private const int MapAnonymous = 0x20;

    private byte* _pointer;
    private const int MremapMayMove = 1;

    private int _length;
    private readonly bool _mapped;

    private LargeBuffer(byte* pointer, int length, bool mapped)
    {
        _pointer = pointer;
        _length = length;
        _mapped = mapped;
    }

    /// <summary>Allocates <paramref name="length"/> bytes; throws <see cref="OutOfMemoryException"/> when the system has none.</summary>
    public static LargeBuffer Allocate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (OperatingSystem.IsLinux())
        {
            void* pointer = Mmap(null, (nuint)length, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
            if (pointer == (void*)-1)
            {
                throw new OutOfMemoryException($"cannot map {length} bytes for a message (errno {Marshal.GetLastPInvokeError()})");
            }

            return new LargeBuffer((byte*)pointer, length, mapped: true);
        }

        return new LargeBuffer((byte*)NativeMemory.Alloc((nuint)length), length, mapped: false);
    }

    /// <summary>
    /// Makes the buffer <paramref name="length"/> bytes long, keeping its content, without copying
    /// it (Linux: mremap moves the pages); false where that cannot be done.
    /// </summary>
    public bool TryResize(int length)
    {
        ObjectDisposedException.ThrowIf(_pointer is null, this);
        if (!_mapped)
        {
            return false;
        }

        void* moved = Mremap(_pointer, (nuint)_length, (nuint)length, MremapMayMove);
        if (moved == (void*)-1)
        {
            return false;
        }

        _pointer = (byte*)moved;
        _length = length;
        return true;
    }

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_pointer is null, this);
        return new Span<byte>(_pointer, _length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_pointer is null, this);
        return new MemoryHandle(_pointer + elementIndex);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        byte* pointer = _pointer;
        _pointer = null;
        if (pointer is null)
        {
            return;
        }

        if (_mapped)
        {
            _ = Munmap(pointer, (nuint)_length);
        }
        else
        {
            NativeMemory.Free(pointer);
        }
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mremap", SetLastError = true)]
    private static partial void* Mremap(void* address, nuint length, nuint newLength, int flags);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(void* address, nuint length);
}
