namespace Journal;

/// <summary>
/// Base of the project's own errors: the message is one line that names the file and the problem, and is fit to
/// show a user as it is (tools print it without a stack trace). Invalid arguments are the exception: they are
/// <see cref="JournalArgumentException"/>, an <see cref="ArgumentException"/>.
/// </summary>
public class JournalException : Exception
{
    /// <summary>Creates the error.</summary>
    public JournalException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// Bad input: an invalid option or argument value (chunk size, log size, name...). An <see cref="ArgumentException"/>,
/// so code that handles argument errors in general handles it; like <see cref="JournalException"/>, its message is one
/// line that names the value and what is wrong with it (<see cref="ArgumentException.ParamName"/> is not set, so
/// nothing is appended to it).
/// </summary>
public class JournalArgumentException : ArgumentException
{
    /// <summary>Creates the error.</summary>
    public JournalArgumentException(string message) : base(message) { }

    /// <summary>Creates the error with the exception that caused it.</summary>
    public JournalArgumentException(string message, Exception? inner) : base(message, inner) { }
}
