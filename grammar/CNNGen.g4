// The CNNGen architecture language.
//
// A phrase describes a convolutional classifier from its input to its output:
//
//     input conv max_pooling [ ( conv , Empty ) ] flatten dropout dense output
//
// Every phrase of the original CNNGen generator is valid. Each layer token may also carry
// arguments in parentheses that pin its hyper-parameters, and a merge may pin its operator
// after its closing bracket:
//
//     input conv(filters=16, kernel=3, stride=1, padding=same, activation=relu)
//           [ ( conv(filters=16) , Empty ) ](merge=add) flatten dense(units=10) output
//
// A bare token leaves the value to the hyper-parameter solver; a fully pinned phrase alone
// determines the network. Which keys a token accepts is checked after parsing, so that an
// unknown key gets a message naming the token and the accepted keys.
//
// Regenerate the Python parser with scripts/generate_parser.sh after editing this file.

grammar CNNGen;

// ---------------------------------------------------------------- structure

architecture
    : INPUT featureBlock+ interstice classificationBlock+ OUTPUT EOF
    ;

// A convolution or a merge, then optional dropout, then optional pooling.
featureBlock
    : (convolution | merge) dropout? pooling?
    ;

convolution
    : kind=(CONV | CONVBN | BNCONV) arguments?
    ;

pooling
    : kind=(MAX_POOLING | AVG_POOLING) arguments?
    ;

dropout
    : DROPOUT arguments?
    ;

// One or more bodies; with two or more, the right path runs beside the left across the bodies.
merge
    : LBRACKET mergeBody+ RBRACKET arguments?
    ;

mergeBody
    : LPAREN left COMMA right RPAREN
    ;

// Optional pooling, then convolutions (each with optional dropout) and nested merges in any
// order, at least one of them, then optional pooling.
left
    : pooling? leftItem+ pooling?
    ;

leftItem
    : convolution dropout?
    | merge
    ;

// Convolutions, or Empty for an identity shortcut.
right
    : convolution+
    | EMPTY
    ;

interstice
    : kind=(FLATTEN | GLOBAL_AVG_POOLING | GLOBAL_MAX_POOLING)
    ;

// The last dense block is the classifier: one unit per class and a softmax.
classificationBlock
    : dropout? dense
    ;

dense
    : DENSE arguments?
    ;

// ---------------------------------------------------------------- arguments

arguments
    : LPAREN argument (COMMA argument)* RPAREN
    ;

argument
    : key=NAME ASSIGN value
    ;

value
    : INT
    | FLOAT
    | NAME
    ;

// ---------------------------------------------------------------- tokens

INPUT              : 'input';
OUTPUT             : 'output';
CONV               : 'conv';
CONVBN             : 'convbn';
BNCONV             : 'bnconv';
MAX_POOLING        : 'max_pooling';
AVG_POOLING        : 'avg_pooling';
DROPOUT            : 'dropout';
FLATTEN            : 'flatten';
GLOBAL_AVG_POOLING : 'global_avg_pooling';
GLOBAL_MAX_POOLING : 'global_max_pooling';
DENSE              : 'dense';
EMPTY              : 'Empty';

LBRACKET : '[';
RBRACKET : ']';
LPAREN   : '(';
RPAREN   : ')';
COMMA    : ',';
ASSIGN   : '=';

FLOAT : DIGITS '.' DIGITS? EXPONENT? | DIGITS EXPONENT | '.' DIGITS EXPONENT?;
INT   : DIGITS;
NAME  : [a-zA-Z_] [a-zA-Z_0-9]*;

fragment DIGITS   : [0-9]+;
fragment EXPONENT : [eE] [+-]? DIGITS;

WS : [ \t\r\n]+ -> skip;

// Any other character becomes a token of its own, so the parser reports it with its position
// instead of the lexer dropping it.
INVALID_CHARACTER : .;
