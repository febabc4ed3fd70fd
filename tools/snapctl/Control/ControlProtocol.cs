using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SnapCtl.Control;

/// <summary>
/// The control socket of a served store: <c>&lt;store&gt;/control.sock</c>, a Unix socket of mode 0600 created by
/// <c>snapctl serve</c>. A command that finds it live sends one request and gets back what the command would have
/// printed and its exit code, so a served store answers <c>snapshot create|delete|merge</c> and <c>status</c> exactly as
/// a closed one does.
/// </summary>
/// <remarks>
/// Wire format: one JSON object per line (UTF-8, at most 64 KiB), request then response, then the connection closes.
/// Request: <c>command</c> (<c>snapshot-create</c>, <c>snapshot-delete</c>, <c>snapshot-merge</c>, <c>status</c>,
/// <c>diff</c>), <c>store</c> (the store path as the user typed it, used in the output), <c>name</c> (for diff: the
/// older snapshot), <c>to</c> (diff: the newer snapshot, null for the origin), <c>cow_bytes</c>, <c>transient</c>,
/// <c>preallocate</c>, <c>force</c>, <c>json</c>. Response: <c>exit</c>, <c>stdout</c>, <c>stderr</c>. A request line is at most
/// <see cref="MaxLineBytes"/>; a response line at most <see cref="MaxResponseBytes"/> (a diff lists every extent).
/// Access: the socket file is mode 0600 (checked by both sides), and each side checks the other's user id
/// (SO_PEERCRED): only the store's owner reaches the serving process.
/// </remarks>
internal static class ControlProtocol
{
    /// <summary>File name of the control socket in the store folder.</summary>
    public const string SocketFileName = "control.sock";

    /// <summary>Mode of the control socket: owner read and write.</summary>
    public const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Longest request line.</summary>
    public const int MaxLineBytes = 64 * 1024;

    /// <summary>Longest response line (the output of a diff of many extents).</summary>
    public const int MaxResponseBytes = 1 << 30;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>The control socket path of <paramref name="store"/>.</summary>
    public static string SocketPath(string store) => Path.Combine(store, SocketFileName);

    /// <summary>The user id of the process at the other end of <paramref name="socket"/> (SO_PEERCRED).</summary>
    public static uint PeerUid(Socket socket)
    {
        Span<byte> cred = stackalloc byte[12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        const int SolSocket = 1, SoPeerCred = 17;
        socket.GetRawSocketOption(SolSocket, SoPeerCred, cred);
        return BitConverter.ToUInt32(cred[4..8]);
    }

    /// <summary>This process's effective user id.</summary>
    public static uint MyUid => geteuid();

    [DllImport("libc")]
    private static extern uint geteuid();

    /// <summary>Reads one line (up to <paramref name="maxBytes"/>, <see cref="MaxLineBytes"/> by default); null at the end of the stream.</summary>
    public static async Task<string?> ReadLineAsync(Socket socket, CancellationToken ct, int maxBytes = MaxLineBytes)
    {
        var buffer = new byte[Math.Min(maxBytes, MaxLineBytes)];
        int used = 0;
        while (true)
        {
            if (used == buffer.Length)
            {
                if (buffer.Length >= maxBytes) throw new IOException($"control message longer than {maxBytes} bytes");
                Array.Resize(ref buffer, (int)Math.Min(maxBytes, 2L * buffer.Length));
            }
            int n = await socket.ReceiveAsync(buffer.AsMemory(used), SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0) return null;
            int nl = Array.IndexOf(buffer, (byte)'\n', used, n);
            used += n;
            if (nl >= 0) return System.Text.Encoding.UTF8.GetString(buffer, 0, nl);
        }
    }

    /// <summary>Sends <paramref name="value"/> as one JSON line.</summary>
    public static async Task WriteLineAsync<T>(Socket socket, T value, CancellationToken ct)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(value, Json);
        var line = new byte[bytes.Length + 1];
        bytes.CopyTo(line, 0);
        line[^1] = (byte)'\n';
        for (int sent = 0; sent < line.Length;)
            sent += await socket.SendAsync(line.AsMemory(sent), SocketFlags.None, ct).ConfigureAwait(false);
    }
}

/// <summary>A command for the serving process.</summary>
internal sealed record ControlRequest(string Command, string Store, string? Name = null, long? CowBytes = null,
    bool Transient = false, bool Force = false, bool Json = false, string? To = null, bool Preallocate = false);

/// <summary>What the command printed and its exit code.</summary>
internal sealed record ControlResponse(int Exit, string Stdout, string Stderr);
