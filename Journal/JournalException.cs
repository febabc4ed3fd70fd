namespace Journal;

/// <summary>
/// Base of the project's own errors: the message is one line that names the file and the problem, and is fit to
/// show a user as it is (tools print it without a stack trace).
/// </summary>
public class JournalException : Exception
{
    /// <summary>Creates the error.</summary>
    public JournalException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Bad input: an invalid option or argument value (chunk size, log size, name...).</summary>
public class JournalArgumentException : JournalException
{
    /// <summary>Creates the error.</summary>
    public JournalArgumentException(string message) : base(message) { }
}
