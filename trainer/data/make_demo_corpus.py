# ruff: noqa: E501  (hand-written data tables: long sentences stay on one line)
"""Generate ``demo_corpus.jsonl``: a few hundred short prompts with answers.

The corpus pretrains the tiny bootstrap policy and seeds the web app's demo project.
It is built from small hand-written fact tables and phrasings, deterministically:

    python -m trainer.data.make_demo_corpus  # rewrites trainer/data/demo_corpus.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = [
    ("France", "Paris", "Europe", "the Seine"),
    ("Germany", "Berlin", "Europe", "the Spree"),
    ("Italy", "Rome", "Europe", "the Tiber"),
    ("Spain", "Madrid", "Europe", "the Manzanares"),
    ("Portugal", "Lisbon", "Europe", "the Tagus"),
    ("Austria", "Vienna", "Europe", "the Danube"),
    ("Hungary", "Budapest", "Europe", "the Danube"),
    ("Czechia", "Prague", "Europe", "the Vltava"),
    ("Poland", "Warsaw", "Europe", "the Vistula"),
    ("Egypt", "Cairo", "Africa", "the Nile"),
    ("Japan", "Tokyo", "Asia", "the Sumida"),
    ("Thailand", "Bangkok", "Asia", "the Chao Phraya"),
    ("Russia", "Moscow", "Europe and Asia", "the Moskva"),
    ("England", "London", "Europe", "the Thames"),
    ("Ireland", "Dublin", "Europe", "the Liffey"),
    ("Iraq", "Baghdad", "Asia", "the Tigris"),
    ("Argentina", "Buenos Aires", "South America", "the Rio de la Plata"),
    ("Mali", "Bamako", "Africa", "the Niger"),
    ("Sudan", "Khartoum", "Africa", "the Nile"),
    ("Serbia", "Belgrade", "Europe", "the Danube"),
    ("Canada", "Ottawa", "North America", "the Ottawa River"),
    ("Australia", "Canberra", "Oceania", "Lake Burley Griffin"),
    ("Kenya", "Nairobi", "Africa", "the Nairobi River"),
    ("Peru", "Lima", "South America", "the Rimac"),
    ("South Korea", "Seoul", "Asia", "the Han"),
    ("Vietnam", "Hanoi", "Asia", "the Red River"),
    ("Sweden", "Stockholm", "Europe", "Lake Malaren"),
    ("Norway", "Oslo", "Europe", "the Akerselva"),
    ("Mexico", "Mexico City", "North America", "the old lake Texcoco"),
    ("Chile", "Santiago", "South America", "the Mapocho"),
]

ANIMALS = [
    ("cat", "a small carnivorous mammal", "meat", "about fifteen years", "purr when they are content"),
    (
        "dog",
        "a domesticated mammal descended from wolves",
        "meat and kibble",
        "ten to thirteen years",
        "can learn hundreds of words",
    ),
    (
        "elephant",
        "the largest land animal",
        "grass, bark and fruit",
        "sixty to seventy years",
        "remember water sources for decades",
    ),
    (
        "owl",
        "a nocturnal bird of prey",
        "mice and insects",
        "ten to twenty years",
        "can turn their heads about 270 degrees",
    ),
    (
        "dolphin",
        "a marine mammal",
        "fish and squid",
        "about forty years",
        "sleep with one half of the brain at a time",
    ),
    (
        "bee",
        "a flying insect",
        "nectar and pollen",
        "a few weeks for workers",
        "dance to tell others where flowers are",
    ),
    (
        "penguin",
        "a flightless seabird",
        "fish and krill",
        "fifteen to twenty years",
        "use their wings as flippers",
    ),
    (
        "horse",
        "a large hoofed mammal",
        "grass and hay",
        "twenty-five to thirty years",
        "can sleep standing up",
    ),
    (
        "octopus",
        "a soft-bodied sea creature with eight arms",
        "crabs and shellfish",
        "one to two years",
        "have three hearts",
    ),
    ("frog", "an amphibian", "insects and worms", "a few years", "drink water through their skin"),
    (
        "giraffe",
        "the tallest mammal",
        "acacia leaves",
        "about twenty-five years",
        "need only a few hours of sleep",
    ),
    (
        "turtle",
        "a reptile with a bony shell",
        "plants, insects and fish",
        "decades, sometimes over a century",
        "cannot leave their shells",
    ),
    (
        "rabbit",
        "a small burrowing mammal",
        "grass and vegetables",
        "eight to twelve years",
        "have teeth that never stop growing",
    ),
    (
        "eagle",
        "a large bird of prey",
        "fish and small mammals",
        "twenty to thirty years",
        "see about four times sharper than people",
    ),
    (
        "shark",
        "a cartilaginous fish",
        "fish and seals",
        "twenty to thirty years",
        "replace their teeth throughout life",
    ),
    (
        "ant",
        "a social insect",
        "seeds, nectar and other insects",
        "weeks for workers, years for queens",
        "can carry many times their own weight",
    ),
    (
        "bat",
        "the only mammal that truly flies",
        "insects or fruit",
        "up to thirty years",
        "find prey by echolocation",
    ),
    (
        "camel",
        "a desert mammal with humps",
        "dry plants",
        "forty to fifty years",
        "store fat, not water, in their humps",
    ),
    ("crow", "a clever black bird", "almost anything", "seven to fifteen years", "can recognize human faces"),
    (
        "salmon",
        "a fish that lives in rivers and the sea",
        "insects and smaller fish",
        "three to eight years",
        "return to the river where they hatched",
    ),
]

WORDS = [
    (
        "ephemeral",
        "lasting for a very short time",
        "The ephemeral beauty of the sunset made everyone stop and look.",
    ),
    ("benevolent", "kind and well meaning", "The benevolent teacher stayed late to help every student."),
    ("meticulous", "very careful about small details", "She kept meticulous notes of every experiment."),
    (
        "resilient",
        "able to recover quickly from difficulty",
        "The resilient town rebuilt its bridge within a year.",
    ),
    (
        "ambiguous",
        "open to more than one interpretation",
        "The ending of the film was deliberately ambiguous.",
    ),
    ("candid", "honest and direct", "He gave a candid answer about his mistakes."),
    ("diligent", "showing steady, careful effort", "The diligent gardener weeded the beds every morning."),
    (
        "eloquent",
        "fluent and persuasive in speaking or writing",
        "Her eloquent speech moved the whole audience.",
    ),
    ("frugal", "careful not to waste money or resources", "A frugal cook uses every part of the vegetable."),
    ("gregarious", "fond of company and sociable", "Their gregarious neighbor knew everyone on the street."),
    ("humble", "modest about one's own importance", "Despite the award, she remained humble."),
    ("inevitable", "certain to happen", "With dark clouds overhead, rain seemed inevitable."),
    ("jubilant", "feeling or expressing great joy", "The jubilant fans sang all the way home."),
    ("lucid", "clear and easy to understand", "The manual gives a lucid explanation of each step."),
    ("nostalgia", "a wistful longing for the past", "The old song filled him with nostalgia."),
    ("obsolete", "no longer used or useful", "Floppy disks are now largely obsolete."),
    (
        "pragmatic",
        "dealing with things in a practical way",
        "They chose a pragmatic solution that worked today.",
    ),
    ("serene", "calm and peaceful", "The lake was serene in the early morning."),
    ("tenacious", "holding firmly to a goal", "The tenacious climber reached the summit on her third try."),
    ("verbose", "using more words than needed", "The verbose report could have been half as long."),
    ("curious", "eager to know or learn something", "The curious child asked how the clock worked."),
    ("fragile", "easily broken or damaged", "Pack the fragile glasses in newspaper."),
    ("generous", "willing to give more than expected", "A generous donor paid for the new library."),
    ("vivid", "producing strong, clear images in the mind", "He gave a vivid description of the storm."),
    ("abundant", "existing in large quantities", "Fresh fruit is abundant in late summer."),
]

OPPOSITES = [
    ("hot", "cold"),
    ("early", "late"),
    ("ancient", "modern"),
    ("generous", "stingy"),
    ("brave", "cowardly"),
    ("simple", "complex"),
    ("rough", "smooth"),
    ("loud", "quiet"),
    ("victory", "defeat"),
    ("expand", "shrink"),
    ("accept", "refuse"),
    ("rare", "common"),
    ("wide", "narrow"),
    ("heavy", "light"),
    ("friend", "enemy"),
    ("begin", "finish"),
    ("shallow", "deep"),
    ("arrive", "depart"),
    ("include", "exclude"),
    ("sharp", "dull"),
]

HOWTO = [
    (
        "boil an egg",
        [
            "Place the egg in a small pot and cover it with cold water.",
            "Bring the water to a boil.",
            "Turn the heat down and simmer for nine minutes for a firm yolk.",
            "Cool the egg in cold water before peeling.",
        ],
        "cooking",
    ),
    (
        "make a cup of tea",
        [
            "Boil fresh water.",
            "Put a tea bag or a spoon of loose tea in a cup.",
            "Pour the hot water over it and wait three to five minutes.",
            "Remove the tea and add milk or lemon if you like.",
        ],
        "cooking",
    ),
    (
        "cook rice",
        [
            "Rinse one cup of rice until the water runs clear.",
            "Add it to a pot with one and a half cups of water and a pinch of salt.",
            "Bring to a boil, cover, and simmer on low heat for fifteen minutes.",
            "Let it rest for five minutes, then fluff it with a fork.",
        ],
        "cooking",
    ),
    (
        "make a simple salad dressing",
        [
            "Put three spoons of olive oil in a jar.",
            "Add one spoon of vinegar or lemon juice.",
            "Add a pinch of salt, pepper and a little mustard.",
            "Close the jar and shake it well.",
        ],
        "cooking",
    ),
    (
        "bake bread",
        [
            "Mix flour, water, salt and yeast into a shaggy dough.",
            "Knead it for ten minutes until smooth.",
            "Let it rise until doubled, about an hour.",
            "Shape the loaf, let it rise again, and bake at 220 degrees Celsius for thirty minutes.",
        ],
        "cooking",
    ),
    (
        "plant a tomato seedling",
        [
            "Choose a sunny spot with rich soil.",
            "Dig a hole deeper than the pot.",
            "Bury the stem up to the first leaves so it grows strong roots.",
            "Water it deeply and add a stake for support.",
        ],
        "gardening",
    ),
    (
        "start a compost pile",
        [
            "Pick a shady corner of the garden.",
            "Layer green scraps like vegetable peels with brown material like dry leaves.",
            "Keep the pile as damp as a wrung-out sponge.",
            "Turn it every couple of weeks so air can reach the middle.",
        ],
        "gardening",
    ),
    (
        "care for a houseplant",
        [
            "Place it where it gets the light it prefers.",
            "Water only when the top of the soil feels dry.",
            "Feed it lightly during spring and summer.",
            "Wipe dust off the leaves now and then.",
        ],
        "gardening",
    ),
    (
        "change a flat bicycle tire",
        [
            "Remove the wheel from the frame.",
            "Use tire levers to pull one side of the tire off the rim.",
            "Replace or patch the inner tube.",
            "Put the tire back, inflate it, and reinstall the wheel.",
        ],
        "practical",
    ),
    (
        "write a good email",
        [
            "Use a short subject line that says what the email is about.",
            "Put the main request in the first two sentences.",
            "Keep paragraphs short.",
            "End with a clear next step and a polite sign-off.",
        ],
        "writing",
    ),
    (
        "prepare for a job interview",
        [
            "Read about the company and the role.",
            "Prepare short stories that show your skills.",
            "Practice answers out loud.",
            "Prepare two or three questions to ask at the end.",
        ],
        "career",
    ),
    (
        "learn a new language",
        [
            "Practice a little every day instead of a lot once a week.",
            "Learn the most common words first.",
            "Listen to native speakers through songs and podcasts.",
            "Speak from the start, even if you make mistakes.",
        ],
        "learning",
    ),
    (
        "fall asleep faster",
        [
            "Go to bed at the same time every night.",
            "Keep the bedroom dark, quiet and cool.",
            "Avoid screens for the last half hour.",
            "If you cannot sleep, get up and read until you feel tired.",
        ],
        "health",
    ),
    (
        "save money each month",
        [
            "Write down what you spend for a month.",
            "Set a budget for each category.",
            "Move a fixed amount to savings on payday.",
            "Cancel subscriptions you do not use.",
        ],
        "finance",
    ),
    (
        "make a budget",
        [
            "List your monthly income after tax.",
            "List your fixed costs such as rent and bills.",
            "Decide how much goes to savings.",
            "Split the rest among food, transport and fun, and track it.",
        ],
        "finance",
    ),
    (
        "clean a cast iron pan",
        [
            "Rinse it with hot water while it is still warm.",
            "Scrub off food with a brush or coarse salt.",
            "Dry it completely on the stove.",
            "Rub a thin layer of oil over the surface.",
        ],
        "cooking",
    ),
    (
        "tie a bowline knot",
        [
            "Make a small loop in the rope.",
            "Pass the free end up through the loop.",
            "Wrap it around the standing part.",
            "Bring it back down through the loop and pull tight.",
        ],
        "practical",
    ),
    (
        "organize a small closet",
        [
            "Take everything out.",
            "Keep only what you used in the last year.",
            "Group similar items together.",
            "Put the things you use most at eye level.",
        ],
        "practical",
    ),
    (
        "study for an exam",
        [
            "Start a week or more before the exam.",
            "Test yourself instead of rereading notes.",
            "Space out short study sessions.",
            "Sleep well the night before.",
        ],
        "learning",
    ),
    (
        "write a short story",
        [
            "Start with a character who wants something.",
            "Put an obstacle in their way.",
            "Let the tension build through a few scenes.",
            "End with a change in the character or their world.",
        ],
        "writing",
    ),
    (
        "back up your computer",
        [
            "Buy an external drive or choose a cloud service.",
            "Turn on automatic backups.",
            "Check that the backup runs every day.",
            "Try restoring one file to make sure it works.",
        ],
        "technology",
    ),
    (
        "make a strong password",
        [
            "Use a long phrase of four or more random words.",
            "Do not reuse it on other sites.",
            "Store it in a password manager.",
            "Turn on two-factor authentication where you can.",
        ],
        "technology",
    ),
    (
        "stretch after a run",
        [
            "Walk for a few minutes to cool down.",
            "Stretch your calves against a wall.",
            "Stretch your hamstrings and quadriceps.",
            "Hold each stretch for about thirty seconds without bouncing.",
        ],
        "health",
    ),
    (
        "make pancakes",
        [
            "Whisk one cup of flour, one egg, one cup of milk and a pinch of salt.",
            "Heat a buttered pan over medium heat.",
            "Pour in a small ladle of batter.",
            "Flip when bubbles appear and cook the other side for a minute.",
        ],
        "cooking",
    ),
]

CONCEPTS = [
    (
        "photosynthesis",
        "science",
        "Photosynthesis is how plants make food. They use sunlight, water and carbon dioxide to produce sugar, and they release oxygen as a by-product.",
    ),
    (
        "gravity",
        "science",
        "Gravity is the force that pulls masses toward each other. It keeps us on the ground, keeps the Moon around the Earth, and keeps the Earth around the Sun.",
    ),
    (
        "an atom",
        "science",
        "An atom is the smallest unit of a chemical element. It has a nucleus of protons and neutrons, surrounded by electrons.",
    ),
    (
        "evolution",
        "science",
        "Evolution is the change in living things over many generations. Individuals with helpful traits survive and reproduce more, so those traits become common.",
    ),
    (
        "the water cycle",
        "science",
        "In the water cycle, water evaporates from oceans and lakes, condenses into clouds, falls as rain or snow, and flows back to the sea.",
    ),
    (
        "climate change",
        "science",
        "Climate change is the long-term warming of the planet, driven mainly by greenhouse gases from burning coal, oil and gas.",
    ),
    (
        "a black hole",
        "science",
        "A black hole is a region of space where gravity is so strong that nothing, not even light, can escape once it crosses the event horizon.",
    ),
    (
        "DNA",
        "science",
        "DNA is the molecule that carries genetic instructions. It is a double helix made of four bases whose order encodes how to build proteins.",
    ),
    (
        "a vaccine",
        "health",
        "A vaccine trains the immune system to recognize a germ without causing the disease, so the body can fight the real infection quickly.",
    ),
    (
        "inflation",
        "finance",
        "Inflation is the general rise of prices over time. When inflation is high, the same amount of money buys less.",
    ),
    (
        "compound interest",
        "finance",
        "Compound interest is interest earned on both the original amount and on the interest already added. Over many years it makes savings grow quickly.",
    ),
    (
        "a stock",
        "finance",
        "A stock is a small share of ownership in a company. Its price goes up and down with how investors judge the company's future.",
    ),
    (
        "a variable in programming",
        "programming",
        "A variable is a name that refers to a value stored in memory, such as a number or a piece of text, so the program can use and change it.",
    ),
    (
        "a function in programming",
        "programming",
        "A function is a named block of code that takes inputs, does a task, and often returns a result. It lets you reuse code instead of repeating it.",
    ),
    (
        "recursion",
        "programming",
        "Recursion is when a function calls itself on a smaller version of the problem, until it reaches a simple case it can answer directly.",
    ),
    (
        "an API",
        "programming",
        "An API is a set of rules that lets one program ask another for data or services, without knowing how the other program works inside.",
    ),
    (
        "a database",
        "programming",
        "A database is an organized store of data that programs can search, add to and update quickly and safely.",
    ),
    (
        "version control",
        "programming",
        "Version control records every change to a set of files, so you can see who changed what, undo mistakes, and work on copies in parallel.",
    ),
    (
        "machine learning",
        "technology",
        "Machine learning is a way of building programs that learn patterns from examples instead of following hand-written rules.",
    ),
    (
        "the internet",
        "technology",
        "The internet is a global network of computers that exchange data using shared protocols, so a message can travel through many routes to its destination.",
    ),
    (
        "democracy",
        "history",
        "Democracy is a system of government in which citizens choose their leaders and laws, usually by voting in free elections.",
    ),
    (
        "the Renaissance",
        "history",
        "The Renaissance was a period in Europe, roughly from the fourteenth to the seventeenth century, of renewed interest in art, science and classical learning.",
    ),
    (
        "the Industrial Revolution",
        "history",
        "The Industrial Revolution began in Britain in the late 1700s, when machines, factories and steam power transformed how goods were made.",
    ),
    (
        "a metaphor",
        "writing",
        "A metaphor describes something by saying it is something else, such as 'time is a thief', to suggest a likeness without using 'like' or 'as'.",
    ),
    (
        "a haiku",
        "writing",
        "A haiku is a short Japanese poem of three lines with five, seven and five syllables, often about nature or a single moment.",
    ),
    (
        "mindfulness",
        "health",
        "Mindfulness is paying calm attention to the present moment, noticing thoughts and feelings without judging them.",
    ),
    (
        "a healthy diet",
        "health",
        "A healthy diet has plenty of vegetables, fruit, whole grains and water, enough protein, and not too much sugar, salt or processed food.",
    ),
    (
        "the placebo effect",
        "health",
        "The placebo effect is when a person feels better after a treatment with no active ingredient, because they expect it to help.",
    ),
    (
        "supply and demand",
        "finance",
        "Supply and demand explains prices: when many people want something that is scarce, the price rises; when there is plenty and few buyers, it falls.",
    ),
    (
        "a prime number",
        "math",
        "A prime number is a whole number greater than one whose only divisors are one and itself, such as 2, 3, 5, 7 and 11.",
    ),
    (
        "a fraction",
        "math",
        "A fraction represents a part of a whole. The bottom number says how many equal parts the whole has, and the top number says how many parts you take.",
    ),
    (
        "probability",
        "math",
        "Probability measures how likely an event is, from zero for impossible to one for certain. A fair coin lands heads with probability one half.",
    ),
]

CONVERSIONS = [
    ("kilometers", "miles", 0.621371),
    ("miles", "kilometers", 1.609344),
    ("kilograms", "pounds", 2.20462),
    ("pounds", "kilograms", 0.453592),
    ("meters", "feet", 3.28084),
    ("liters", "cups", 4.22675),
    ("inches", "centimeters", 2.54),
    ("hours", "minutes", 60.0),
    ("days", "hours", 24.0),
    ("minutes", "seconds", 60.0),
]

TIPS = [
    (
        "staying focused while working",
        "Work in blocks of about twenty-five minutes, put your phone in another room, and write down stray thoughts to deal with later.",
    ),
    (
        "drinking more water",
        "Keep a bottle on your desk, drink a glass with every meal, and add a slice of lemon if plain water bores you.",
    ),
    (
        "being a better listener",
        "Look at the person, do not plan your reply while they talk, and repeat back what you heard before giving advice.",
    ),
    (
        "running your first five kilometers",
        "Alternate running and walking at first, go slowly enough to talk, and add a little running each week.",
    ),
    (
        "keeping a journal",
        "Write three sentences every evening about what happened and how you felt. Short and regular beats long and rare.",
    ),
    (
        "reducing food waste",
        "Plan meals before shopping, store leftovers in clear boxes at eye level, and freeze bread and fruit before they spoil.",
    ),
    (
        "making new friends in a new city",
        "Join a club or class that meets every week, say yes to invitations, and follow up with people you enjoyed talking to.",
    ),
    (
        "taking better photos with a phone",
        "Clean the lens, use natural light, keep the horizon straight, and get closer to your subject.",
    ),
    (
        "public speaking",
        "Know your first two sentences by heart, speak slower than feels natural, and look at friendly faces in the room.",
    ),
    (
        "reading more books",
        "Carry a book everywhere, read ten pages before bed, and give up on books you do not enjoy.",
    ),
    (
        "learning to code",
        "Pick one language, build tiny projects that interest you, and read error messages carefully; they usually say what is wrong.",
    ),
    (
        "keeping a tidy desk",
        "Clear it at the end of each day, keep only today's work on it, and give every object a home.",
    ),
    (
        "writing clearly",
        "Use short sentences, prefer common words, put the main point first, and cut anything that does not help the reader.",
    ),
    (
        "managing stress",
        "Move your body every day, sleep enough, talk to someone you trust, and break big worries into small next steps.",
    ),
    (
        "travelling light",
        "Pack clothes that mix and match, roll them instead of folding, and bring half of what you first planned.",
    ),
    (
        "remembering names",
        "Repeat the name when you are introduced, link it to something about the person, and use it once more before you part.",
    ),
]

HANDWRITTEN = [
    (
        "Why is the sky blue?",
        "Sunlight contains all colors. Air molecules scatter short blue wavelengths much more than red ones, so blue light reaches our eyes from every direction of the sky.",
        "science",
    ),
    (
        "Why do leaves change color in autumn?",
        "As days get shorter, trees stop making green chlorophyll. The yellow and orange pigments that were hidden show through, and some trees also make red pigments.",
        "science",
    ),
    (
        "How far is the Moon from the Earth?",
        "The Moon is about 384,000 kilometers from the Earth on average, roughly thirty times the Earth's width.",
        "science",
    ),
    (
        "What is the boiling point of water?",
        "At sea level, water boils at 100 degrees Celsius, or 212 degrees Fahrenheit. At high altitude it boils at a lower temperature.",
        "science",
    ),
    (
        "How many planets are in the solar system?",
        "There are eight planets: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune.",
        "science",
    ),
    (
        "What is the largest ocean?",
        "The Pacific Ocean is the largest and deepest ocean, covering about a third of the Earth's surface.",
        "geography",
    ),
    (
        "What is the longest river in the world?",
        "The Nile and the Amazon are both about 6,500 kilometers long; which one is longer depends on how the sources are measured.",
        "geography",
    ),
    (
        "What is the tallest mountain?",
        "Mount Everest, on the border of Nepal and China, is the tallest mountain above sea level at about 8,849 meters.",
        "geography",
    ),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet in the 1590s.", "history"),
    (
        "Who painted the Mona Lisa?",
        "Leonardo da Vinci painted the Mona Lisa in the early 1500s. It hangs in the Louvre in Paris.",
        "history",
    ),
    (
        "When did the first person walk on the Moon?",
        "Neil Armstrong stepped onto the Moon on 20 July 1969, during the Apollo 11 mission.",
        "history",
    ),
    (
        "Write a haiku about rain.",
        "Soft rain on the roof\nthe garden drinks in silence\nworms come out to dance",
        "writing",
    ),
    (
        "Write a haiku about the sea.",
        "Grey waves fold and break\nsalt wind carries gull voices\nthe tide keeps its time",
        "writing",
    ),
    (
        "Write a haiku about winter.",
        "Bare trees hold the snow\nmy breath hangs in the cold air\nthe kettle whistles",
        "writing",
    ),
    (
        "Write a two-line poem about coffee.",
        "A dark cup at dawn, steam rising slow,\nthe day begins where warm thoughts go.",
        "writing",
    ),
    (
        "Tell me a short joke.",
        "Why did the scarecrow win an award? Because he was outstanding in his field.",
        "fun",
    ),
    (
        "Tell me a joke about computers.",
        "Why did the computer go to the doctor? It had a virus, and it could not stop sending emails.",
        "fun",
    ),
    (
        "Tell me a fun fact.",
        "Honey never spoils. Archaeologists have found pots of honey in ancient Egyptian tombs that were still good to eat.",
        "fun",
    ),
    ("Give me a riddle.", "What has keys but cannot open locks? A piano.", "fun"),
    (
        "Suggest a name for a pet goldfish.",
        "How about Bubbles, Sunny or Captain Fin? Sunny suits a bright orange fish.",
        "fun",
    ),
    (
        "Summarize the story of Cinderella in one sentence.",
        "A kind young woman mistreated by her stepfamily attends a royal ball with the help of a fairy godmother, loses a glass slipper, and is found and married by the prince.",
        "writing",
    ),
    (
        "How do I say thank you in Spanish?",
        "You say 'gracias'. To say thank you very much, say 'muchas gracias'.",
        "language",
    ),
    (
        "How do I say hello in French?",
        "You say 'bonjour' during the day and 'bonsoir' in the evening. Among friends, 'salut' is common.",
        "language",
    ),
    ("How do I say good morning in German?", "You say 'guten Morgen'.", "language"),
    (
        "What is the difference between weather and climate?",
        "Weather is what the atmosphere does on a given day. Climate is the average pattern of weather in a place over many years.",
        "science",
    ),
    (
        "Is a tomato a fruit or a vegetable?",
        "Botanically a tomato is a fruit, because it grows from the flower and holds seeds. In cooking it is usually treated as a vegetable.",
        "cooking",
    ),
    (
        "How much sleep does an adult need?",
        "Most adults need seven to nine hours of sleep a night to feel rested and stay healthy.",
        "health",
    ),
    (
        "How often should I exercise?",
        "A common guideline is at least 150 minutes of moderate activity a week, such as brisk walking, plus two days of strength exercises.",
        "health",
    ),
    (
        "What should I pack for a day hike?",
        "Bring water, snacks, a map, sun protection, a warm layer, a rain jacket, a small first aid kit and a charged phone.",
        "travel",
    ),
    (
        "What is a good first trip for someone who has never travelled abroad?",
        "Choose a nearby country with easy transport and a language you partly know. Plan a few days in one city rather than rushing through many.",
        "travel",
    ),
    (
        "Can you recommend a classic novel?",
        "Try Pride and Prejudice by Jane Austen. It is witty, easy to read, and still funny after two hundred years.",
        "books",
    ),
    (
        "Can you recommend a science book for beginners?",
        "A Short History of Nearly Everything by Bill Bryson explains big ideas in science with humor and clear stories.",
        "books",
    ),
    (
        "What is the capital of the United States?",
        "The capital of the United States is Washington, D.C.",
        "geography",
    ),
    ("What language is spoken in Brazil?", "The official language of Brazil is Portuguese.", "geography"),
    (
        "What is Python used for?",
        "Python is a general-purpose programming language used for web development, data analysis, machine learning, automation and scripting.",
        "programming",
    ),
    (
        "How do I reverse a list in Python?",
        "Use my_list.reverse() to reverse it in place, or my_list[::-1] to get a reversed copy.",
        "programming",
    ),
    (
        "How do I read a file in Python?",
        "Use a with block: with open('notes.txt') as f: text = f.read(). The file is closed automatically afterwards.",
        "programming",
    ),
    (
        "What does HTML stand for?",
        "HTML stands for HyperText Markup Language, the language used to structure web pages.",
        "technology",
    ),
    (
        "What is the difference between RAM and storage?",
        "RAM is fast, temporary memory for programs that are running. Storage, like an SSD, keeps files even when the computer is off.",
        "technology",
    ),
    (
        "How can I be more productive in the morning?",
        "Prepare the evening before, wake at a regular time, do your most important task first, and leave email for later.",
        "productivity",
    ),
]


def _capitals(rng: random.Random) -> list[dict]:
    out = []
    for country, city, continent, river in CAPITALS:
        q = rng.choice(
            [
                "What is the capital of {c}?",
                "Which city is the capital of {c}?",
                "Tell me the capital of {c}.",
            ]
        )
        a = rng.choice(
            [
                "The capital of {c} is {city}. It lies on {river}.",
                "{city} is the capital of {c}, a country in {cont}.",
                "The capital is {city}, which sits on {river}.",
            ]
        )
        out.append(
            dict(
                prompt=q.format(c=country),
                response=a.format(c=country, city=city, river=river, cont=continent),
                topic="geography",
            )
        )
        out.append(
            dict(
                prompt=f"Which continent is {country} in?",
                response=f"{country} is in {continent}. Its capital is {city}.",
                topic="geography",
            )
        )
    return out


def _animals(rng: random.Random) -> list[dict]:
    out = []
    for name, what, food, life, fact in ANIMALS:
        plural = name if name in ("salmon",) else name + "s"
        out.append(
            dict(
                prompt=f"What do {plural} eat?",
                response=f"{plural.capitalize()} mostly eat {food}.",
                topic="animals",
            )
        )
        out.append(
            dict(
                prompt=f"How long do {plural} live?",
                response=f"A {name} usually lives {life}.",
                topic="animals",
            )
        )
        out.append(
            dict(
                prompt=rng.choice(
                    [f"Tell me something interesting about {plural}.", f"Give me a fun fact about {plural}."]
                ),
                response=f"The {name} is {what}. Did you know that {plural} {fact}?",
                topic="animals",
            )
        )
    return out


def _words(rng: random.Random) -> list[dict]:
    out = []
    for word, meaning, example in WORDS:
        out.append(
            dict(
                prompt=rng.choice([f"What does '{word}' mean?", f"Define the word {word}."]),
                response=f"'{word.capitalize()}' means {meaning}. For example: {example}",
                topic="language",
            )
        )
        out.append(dict(prompt=f"Use the word '{word}' in a sentence.", response=example, topic="language"))
    for a, b in OPPOSITES:
        out.append(
            dict(
                prompt=f"What is the opposite of '{a}'?",
                response=f"The opposite of '{a}' is '{b}'.",
                topic="language",
            )
        )
    return out


def _howto(rng: random.Random) -> list[dict]:
    out = []
    for task, steps, topic in HOWTO:
        q = rng.choice(
            [
                "How do I {t}?",
                "What is the best way to {t}?",
                "Explain how to {t}.",
                "Can you tell me how to {t}?",
            ]
        )
        body = " ".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        out.append(
            dict(prompt=q.format(t=task), response=f"Here is a simple way to {task}: {body}", topic=topic)
        )
        out.append(
            dict(
                prompt=f"Give me one quick tip to {task}.",
                response=f"A good tip: {steps[rng.randrange(len(steps))].lower()}",
                topic=topic,
            )
        )
    return out


def _concepts(rng: random.Random) -> list[dict]:
    out = []
    for name, topic, text in CONCEPTS:
        q = rng.choice(
            ["What is {n}?", "Explain {n} in simple terms.", "Can you explain {n}?", "Describe {n} briefly."]
        )
        out.append(dict(prompt=q.format(n=name), response=text, topic=topic))
        first = text.split(". ")[0].rstrip(".") + "."
        out.append(
            dict(prompt=f"Explain {name} to a ten-year-old in one sentence.", response=first, topic=topic)
        )
    return out


def _math(rng: random.Random) -> list[dict]:
    out = []
    for _ in range(40):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        op = rng.choice(["plus", "minus", "times"])
        val = {"plus": a + b, "minus": a - b, "times": a * b}[op]
        out.append(
            dict(
                prompt=rng.choice([f"What is {a} {op} {b}?", f"Calculate {a} {op} {b}."]),
                response=f"{a} {op} {b} is {val}.",
                topic="math",
            )
        )
    for src, dst, f in CONVERSIONS:
        n = rng.choice([2, 3, 5, 10, 12, 20])
        out.append(
            dict(
                prompt=f"How many {dst} are in {n} {src}?",
                response=f"{n} {src} is about {n * f:.1f} {dst}, since one of the {src[:-1] if src.endswith('s') else src} is {f:g} {dst}.",
                topic="math",
            )
        )
    return out


def _tips(rng: random.Random) -> list[dict]:
    return [
        dict(
            prompt=rng.choice([f"Do you have advice for {t}?", f"Any tips for {t}?", f"Help me with {t}."]),
            response=a,
            topic="advice",
        )
        for t, a in TIPS
    ]


def build_corpus(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = [dict(prompt=q, response=a, topic=t) for q, a, t in HANDWRITTEN]
    for make in (_capitals, _animals, _words, _howto, _concepts, _math, _tips):
        items += make(rng)
    seen, unique = set(), []
    for item in items:
        if item["prompt"] not in seen:
            seen.add(item["prompt"])
            unique.append(item)
    rng.shuffle(unique)
    return unique


def main() -> None:
    path = Path(__file__).with_name("demo_corpus.jsonl")
    items = build_corpus()
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} items to {path}")


if __name__ == "__main__":
    main()
